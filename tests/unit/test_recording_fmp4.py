"""Recording fMP4 segments held in memory: ``EXT-X-MAP`` in the recording's playlist, the
initialization segments stored once, and kept by crash finalization."""

from __future__ import annotations

from pathlib import Path

from api.routes.playback import point_segments_at
from tests.fakes import MemoryStore
from workers.m3u8 import Segment, parse_media_playlist, render_playlist
from workers.recording import RecordingOutput, RecordingSummary, render_recording
from workers.recording_recovery import finalize_stored
from workers.storage import LocalRecordingStorage

STREAM = "b" * 24
RID = "c" * 24


def fmp4_segments() -> list[Segment]:
    return [
        Segment("t-0.m4s", 2.0, init="t-init0.mp4"),
        Segment("t-1.m4s", 2.0, init="t-init0.mp4"),
        Segment("t-2.m4s", 1.5, discontinuity=True, init="t-init0.mp4"),
        Segment("t-3.m4s", 2.0, discontinuity=True, init="t-init1.mp4"),
    ]


def test_a_map_before_the_first_segment_and_wherever_the_init_changes() -> None:
    text = render_recording(fmp4_segments(), target=2, ended=True)
    lines = text.splitlines()
    assert "#EXT-X-VERSION:7" in lines
    assert [line for line in lines if line.startswith("#EXT-X-MAP")] == [
        '#EXT-X-MAP:URI="t-init0.mp4"',
        '#EXT-X-MAP:URI="t-init1.mp4"',
    ]
    assert lines.index('#EXT-X-MAP:URI="t-init0.mp4"') < lines.index("t-0.m4s")
    second_map = lines.index('#EXT-X-MAP:URI="t-init1.mp4"')
    assert lines[second_map - 1] == "#EXT-X-DISCONTINUITY" and lines[second_map + 2] == "t-3.m4s"
    assert parse_media_playlist(text) == fmp4_segments()


def test_ts_playlists_keep_version_3_and_no_map() -> None:
    text = render_playlist([Segment("a.ts", 2.0)], target_duration=2, media_sequence=0)
    assert "#EXT-X-VERSION:3" in text and "EXT-X-MAP" not in text
    assert parse_media_playlist(text) == [Segment("a.ts", 2.0)]


def test_the_recording_url_points_the_map_at_the_recording() -> None:
    text = render_recording(fmp4_segments()[:1], target=2, ended=True).encode()
    rewritten = point_segments_at(text, "http://h/recordings/r/").decode()
    assert '#EXT-X-MAP:URI="http://h/recordings/r/t-init0.mp4"' in rewritten
    assert "http://h/recordings/r/t-0.m4s" in rewritten.splitlines()


async def test_segments_from_memory_are_stored_with_their_init_once(tmp_path: Path) -> None:
    store, storage = MemoryStore(), LocalRecordingStorage(tmp_path / "recordings")
    spool = tmp_path / "live"
    output = RecordingOutput(
        STREAM, store=store, storage=storage, segment_seconds=2, started_at=1, spool=spool
    )
    output.start()
    for seg in fmp4_segments():
        init = b"init" + seg.init.encode() if seg.init else b""
        output.on_files(seg, {seg.init or "": init, seg.name: b"media" + seg.name.encode()})
    summary = await output.close()
    assert summary.status == "ready" and summary.segments == 4
    rid = output.recording_id
    assert rid is not None
    directory = storage.directory(rid)
    stored = sorted(p.name for p in directory.iterdir() if p.name != "index.m3u8")
    assert stored == ["t-0.m4s", "t-1.m4s", "t-2.m4s", "t-3.m4s", "t-init0.mp4", "t-init1.mp4"]
    assert (directory / "t-init1.mp4").read_bytes() == b"initt-init1.mp4"
    assert summary.bytes == sum((directory / name).stat().st_size for name in stored)
    text = (directory / "index.m3u8").read_text()
    assert parse_media_playlist(text)[1:] == fmp4_segments()[1:]
    assert not any(spool.iterdir()), "the spooled files are gone"


async def test_finalize_keeps_the_init_segments_and_drops_what_lacks_one(tmp_path: Path) -> None:
    storage = LocalRecordingStorage(tmp_path)
    directory = storage.directory(RID)
    directory.mkdir()
    listed = fmp4_segments()
    for name in ["t-init0.mp4", "t-0.m4s", "t-1.m4s", "t-2.m4s", "t-3.m4s", "t-9.m4s"]:
        (directory / name).write_bytes(b"x" * 10)  # t-init1.mp4 was never stored
    (directory / "t-init7.mp4").write_bytes(b"x" * 10)  # stored, never listed
    await storage.write_playlist(RID, render_recording(listed, target=2, ended=False))
    unfinished = RecordingSummary(RID, STREAM, "recording", started_at=1.0)
    closed = await finalize_stored(unfinished, storage)
    assert closed.status == "ready"
    assert (closed.segments, closed.duration, closed.bytes) == (3, 5.5, 40)
    left = sorted(p.name for p in directory.iterdir() if p.name != "index.m3u8")
    assert left == ["t-0.m4s", "t-1.m4s", "t-2.m4s", "t-init0.mp4"]
    text = (directory / "index.m3u8").read_text()
    assert '#EXT-X-MAP:URI="t-init0.mp4"' in text and text.endswith("#EXT-X-ENDLIST\n")
    assert [s.name for s in parse_media_playlist(text)] == ["t-0.m4s", "t-1.m4s", "t-2.m4s"]
