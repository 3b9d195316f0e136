"""Recording: segments kept from the live playlist, atomic playlists, crash finalization.

The store is an in-memory stand-in for our own ``RecordingStore`` seam; storage is the real
local-disk implementation in a temporary directory.
"""

from __future__ import annotations

import errno
import os
from dataclasses import replace
from pathlib import Path

import pytest

from tests.fakes import MemoryStore
from workers.m3u8 import Segment, parse_media_playlist
from workers.playlist import LivePlaylist
from workers.recording import RecordingOutput, RecordingSummary, render_recording
from workers.recording_recovery import finalize_stored, finalize_unfinished
from workers.storage import LocalRecordingStorage

STREAM = "a" * 24


def live_segment(directory: Path, name: str, size: int = 1880) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(b"\x47" * size)
    return path


def playlist_text(storage: LocalRecordingStorage, rid: str) -> str:
    return (storage.directory(rid) / "index.m3u8").read_text()


async def test_segments_are_linked_and_the_playlist_grows_then_closes(tmp_path: Path) -> None:
    store, storage = MemoryStore(), LocalRecordingStorage(tmp_path / "recordings")
    output = RecordingOutput(
        STREAM, store=store, storage=storage, segment_seconds=2, started_at=1000.0
    )
    live = LivePlaylist(
        tmp_path / "live", list_size=2, segment_seconds=2, on_segment=output.on_segment
    )
    output.start()
    for n in range(6):
        live_segment(live.directory, f"s-1-{n}.ts")
        live.add(Segment(f"s-1-{n}.ts", 2.0))
        await output.wait_idle()
        await live.flush()
        rid = output.recording_id
        assert rid is not None
        text = playlist_text(storage, rid)
        assert "#EXT-X-PLAYLIST-TYPE:EVENT" in text and "#EXT-X-ENDLIST" not in text
        assert [s.name for s in parse_media_playlist(text)] == [f"s-1-{i}.ts" for i in range(n + 1)]
    # The live window deleted its oldest names; the recording keeps every segment.
    assert not (live.directory / "s-1-0.ts").exists()
    assert (storage.directory(rid) / "s-1-0.ts").stat().st_size == 1880
    assert output.summary().status == "recording"

    summary = await output.close()
    assert summary.status == "ready" and summary.error is None
    assert (summary.segments, summary.duration, summary.bytes) == (6, 12.0, 6 * 1880)
    assert summary.ended_at is not None and summary.ended_at >= 1000.0
    assert store.rows[rid] == summary
    text = playlist_text(storage, rid)
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in text and text.endswith("#EXT-X-ENDLIST\n")


async def test_a_session_without_segments_is_a_failed_recording(tmp_path: Path) -> None:
    store, storage = MemoryStore(), LocalRecordingStorage(tmp_path)
    output = RecordingOutput(STREAM, store=store, storage=storage, segment_seconds=2, started_at=1)
    output.start()
    summary = await output.close()
    assert summary.status == "failed"
    assert summary.error and "no segment" in summary.error
    assert store.rows[summary.recording_id].status == "failed"


async def test_store_failure_leaves_the_stream_unrecorded_without_raising(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    output = RecordingOutput(
        STREAM,
        store=MemoryStore(fail_start=True),
        storage=LocalRecordingStorage(tmp_path),
        segment_seconds=2,
        started_at=1,
    )
    output.start()
    output.on_segment(live_segment(tmp_path / "live", "x-1-0.ts"), Segment("x-1-0.ts", 2.0))
    summary = await output.close()
    assert summary.status == "failed" and output.recording_id is None
    assert "could not create its recording" in caplog.text


async def test_a_segment_that_vanished_is_skipped(tmp_path: Path) -> None:
    store, storage = MemoryStore(), LocalRecordingStorage(tmp_path / "rec")
    output = RecordingOutput(STREAM, store=store, storage=storage, segment_seconds=1, started_at=1)
    output.start()
    output.on_segment(tmp_path / "live" / "gone.ts", Segment("gone.ts", 1.0))
    output.on_segment(live_segment(tmp_path / "live", "kept.ts"), Segment("kept.ts", 1.0))
    summary = await output.close()
    assert summary.status == "ready" and summary.segments == 1
    assert summary.error is not None  # says a segment could not be stored


async def test_link_falls_back_to_a_copy_across_filesystems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cross_device(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, "link", cross_device)
    storage = LocalRecordingStorage(tmp_path / "rec")
    source = live_segment(tmp_path / "live", "c-1-0.ts", 500)
    assert await storage.add_segment("r1", source) == 500
    source.unlink()
    assert (tmp_path / "rec" / "r1" / "c-1-0.ts").read_bytes() == b"\x47" * 500
    assert not list((tmp_path / "rec" / "r1").glob(".*.tmp"))


def test_storage_refuses_ids_that_could_leave_its_root(tmp_path: Path) -> None:
    storage = LocalRecordingStorage(tmp_path)
    for bad in ("", "../x", ".hidden", "a/b"):
        with pytest.raises(ValueError, match="invalid recording id"):
            storage.directory(bad)


async def test_finalize_keeps_listed_segments_and_drops_the_rest(tmp_path: Path) -> None:
    storage = LocalRecordingStorage(tmp_path)
    rid = "r" * 24
    listed = [Segment("a-1-0.ts", 2.0), Segment("a-1-1.ts", 1.5), Segment("a-1-2.ts", 2.0)]
    for seg in listed[:2]:
        live_segment(storage.directory(rid), seg.name, 100)
    live_segment(storage.directory(rid), "a-1-3.ts", 100)  # linked, then the crash
    await storage.write_playlist(rid, render_recording(listed, target=2, ended=False))
    unfinished = RecordingSummary(rid, STREAM, "recording", started_at=1000.0)

    closed = await finalize_stored(unfinished, storage)

    assert closed.status == "ready" and closed.error is None
    assert (closed.segments, closed.duration, closed.bytes) == (2, 3.5, 200)
    assert closed.ended_at is not None and closed.ended_at > 1000.0
    text = playlist_text(storage, rid)
    assert [s.name for s in parse_media_playlist(text)] == ["a-1-0.ts", "a-1-1.ts"]
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in text and "#EXT-X-ENDLIST" in text
    assert not (storage.directory(rid) / "a-1-3.ts").exists()


async def test_finalize_without_a_playlist_fails_with_a_reason(tmp_path: Path) -> None:
    store, storage = MemoryStore(), LocalRecordingStorage(tmp_path)
    rid = await store.recording_started(STREAM, 5.0)
    ready_rid = await store.recording_started(STREAM, 6.0)
    store.rows[ready_rid] = replace(store.rows[ready_rid], status="ready")

    [closed] = await finalize_unfinished(store, storage)

    assert closed.recording_id == rid
    assert closed.status == "failed"
    assert closed.error == "the service stopped before a segment was recorded"
    assert store.rows[rid] == closed
    assert store.rows[ready_rid].status == "ready"  # finished recordings are left alone


def test_recording_playlist_target_duration_covers_every_segment() -> None:
    text = render_recording([Segment("a.ts", 2.0), Segment("b.ts", 3.2)], target=2, ended=True)
    assert "#EXT-X-TARGETDURATION:4" in text
    assert "#EXT-X-MEDIA-SEQUENCE:0" in text
