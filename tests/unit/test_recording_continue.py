"""A recording continued by a later owner of its session, and one handed over to it: on local
disk here (object storage in ``tests/e2e/test_cluster_resume.py``)."""

from __future__ import annotations

from pathlib import Path

from tests.fakes import MemoryStore
from tests.unit.test_recording import STREAM, live_segment, playlist_text
from workers.m3u8 import Segment, parse_media_playlist
from workers.recording import RecordingOutput
from workers.storage import LocalRecordingStorage


async def record(output: RecordingOutput, directory: Path, names: list[str]) -> None:
    for name in names:
        output.on_segment(live_segment(directory, name), Segment(name, 2.0))
    await output.wait_idle()


async def test_a_continued_recording_keeps_what_is_stored_and_marks_the_break(
    tmp_path: Path,
) -> None:
    store, storage = MemoryStore(), LocalRecordingStorage(tmp_path / "rec")
    first = RecordingOutput(
        STREAM, store=store, storage=storage, segment_seconds=2, started_at=5, generation=1
    )
    first.start()
    await record(first, tmp_path / "live1", ["s-1-1-0.ts", "s-1-1-1.ts"])
    rid = first.recording_id
    assert rid is not None and store.rows[rid].lease_generation == 1

    later = RecordingOutput(
        STREAM,
        store=store,
        storage=storage,
        segment_seconds=2,
        started_at=5,
        generation=2,
        resume_id=rid,
    )
    later.start()
    await record(later, tmp_path / "live2", ["s-2-1-0.ts", "s-2-1-1.ts"])
    summary = await later.close()
    assert (summary.recording_id, summary.status, summary.segments) == (rid, "ready", 4)
    assert summary.lease_generation == 2 and store.rows[rid] == summary
    segments = parse_media_playlist(playlist_text(storage, rid))
    assert [s.name for s in segments] == ["s-1-1-0.ts", "s-1-1-1.ts", "s-2-1-0.ts", "s-2-1-1.ts"]
    assert [s.discontinuity for s in segments] == [False, False, True, False]

    await first.close()  # the earlier owner's late final state does not replace it
    assert store.rows[rid] == summary


async def test_a_recording_with_nothing_stored_here_is_not_continued(tmp_path: Path) -> None:
    """Another node's recording on its own disk: this node begins a recording of its own."""
    store, storage = MemoryStore(), LocalRecordingStorage(tmp_path / "rec")
    elsewhere = await store.recording_started(STREAM, 5, generation=1)
    output = RecordingOutput(
        STREAM,
        store=store,
        storage=storage,
        segment_seconds=2,
        started_at=5,
        generation=2,
        resume_id=elsewhere,
    )
    output.start()
    await record(output, tmp_path / "live", ["s-2-1-0.ts"])
    assert output.recording_id not in (None, elsewhere)
    assert (await output.close()).status == "ready"
    assert store.rows[elsewhere].status == "recording"  # left for its node to close


async def test_a_hand_over_closes_a_recording_other_nodes_cannot_reach(tmp_path: Path) -> None:
    store, storage = MemoryStore(), LocalRecordingStorage(tmp_path / "rec")
    output = RecordingOutput(STREAM, store=store, storage=storage, segment_seconds=2, started_at=5)
    output.start()
    await record(output, tmp_path / "live", ["s-1-1-0.ts"])
    await output.hand_over()
    rid = output.recording_id
    assert rid is not None and store.rows[rid].status == "ready"
    assert playlist_text(storage, rid).endswith("#EXT-X-ENDLIST\n")
