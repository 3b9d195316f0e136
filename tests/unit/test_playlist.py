"""The live playlist keeper: window, retirement, discontinuities, ENDLIST, through the methods the
HLS output uses (``add``, ``refresh``, ``flush``, ``close``)."""

from pathlib import Path

from workers.m3u8 import Segment, parse_media_playlist, render_playlist
from workers.playlist import LivePlaylist

FFMPEG_PLAYLIST = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:0
#EXTINF:2.002000,
a-0.ts
#EXTINF:1.968000,
a-1.ts
"""


def write_segments(directory: Path, *names: str) -> None:
    for name in names:
        (directory / name).write_bytes(b"\x47" * 188)


def segment_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.ts"))


def test_parse_media_playlist() -> None:
    assert parse_media_playlist(FFMPEG_PLAYLIST) == [
        Segment("a-0.ts", 2.002),
        Segment("a-1.ts", 1.968),
    ]


def test_render_playlist_rfc8216_tags() -> None:
    text = render_playlist(
        [Segment("x.ts", 2.0), Segment("y.ts", 1.5, discontinuity=True)],
        target_duration=2,
        media_sequence=7,
        discontinuity_sequence=1,
        ended=True,
    )
    assert text.splitlines() == [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        "#EXT-X-TARGETDURATION:2",
        "#EXT-X-MEDIA-SEQUENCE:7",
        "#EXT-X-DISCONTINUITY-SEQUENCE:1",
        "#EXTINF:2.000,",
        "x.ts",
        "#EXT-X-DISCONTINUITY",
        "#EXTINF:1.500,",
        "y.ts",
        "#EXT-X-ENDLIST",
    ]


async def test_refresh_ignores_listed_segments_not_on_disk(tmp_path: Path) -> None:
    private = tmp_path / "ffmpeg-a.m3u8"
    private.write_text(FFMPEG_PLAYLIST)
    write_segments(tmp_path, "a-0.ts")
    playlist = LivePlaylist(tmp_path, list_size=3, segment_seconds=2)
    assert await playlist.refresh(private) == 1
    assert "a-1.ts" not in playlist.path.read_text()
    assert await playlist.refresh(private) == 0
    write_segments(tmp_path, "a-1.ts")
    assert await playlist.refresh(private) == 1
    assert "a-1.ts" in playlist.path.read_text()


async def test_window_slides_and_old_files_are_deleted_one_window_later(tmp_path: Path) -> None:
    playlist = LivePlaylist(tmp_path, list_size=2, segment_seconds=2)
    names = [f"s-{i}.ts" for i in range(6)]
    write_segments(tmp_path, *names)
    for name in names:
        playlist.add(Segment(name, 2.0))
    await playlist.flush()
    assert [s.name for s in playlist.window] == ["s-4.ts", "s-5.ts"]
    assert "#EXT-X-MEDIA-SEQUENCE:4" in playlist.path.read_text()
    assert segment_files(tmp_path) == ["s-2.ts", "s-3.ts", "s-4.ts", "s-5.ts"]


async def test_discontinuity_marks_next_segment_and_counts_when_retired(tmp_path: Path) -> None:
    playlist = LivePlaylist(tmp_path, list_size=2, segment_seconds=2)
    playlist.mark_discontinuity()  # nothing published yet: no discontinuity needed
    playlist.add(Segment("a.ts", 2.0))
    playlist.mark_discontinuity()
    playlist.add(Segment("b.ts", 2.0))
    assert [s.discontinuity for s in playlist.window] == [False, True]
    playlist.add(Segment("c.ts", 2.0))
    playlist.add(Segment("d.ts", 2.0))
    await playlist.flush()
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:1" in playlist.path.read_text()


async def test_target_duration_covers_long_segments_and_close_writes_endlist(
    tmp_path: Path,
) -> None:
    playlist = LivePlaylist(tmp_path, list_size=3, segment_seconds=2)
    playlist.add(Segment("a.ts", 4.2))
    await playlist.close()
    text = playlist.path.read_text()
    assert "#EXT-X-TARGETDURATION:5" in text
    assert text.endswith("#EXT-X-ENDLIST\n")


def test_segments_reported_to_callback(tmp_path: Path) -> None:
    seen: list[str] = []
    playlist = LivePlaylist(
        tmp_path,
        list_size=3,
        segment_seconds=2,
        on_segment=lambda path, seg: seen.append(path.name),
    )
    playlist.add(Segment("a.ts", 2.0))
    assert seen == ["a.ts"]


async def test_refresh_skips_an_unchanged_private_playlist(tmp_path: Path, monkeypatch) -> None:
    private = tmp_path / "ffmpeg-a.m3u8"
    private.write_text(FFMPEG_PLAYLIST)
    write_segments(tmp_path, "a-0.ts", "a-1.ts")
    playlist = LivePlaylist(tmp_path, list_size=3, segment_seconds=2)
    assert await playlist.refresh(private) == 2
    reads = []
    real_read_text = Path.read_text

    def counting_read_text(self: Path, *args, **kwargs) -> str:
        reads.append(self.name)
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting_read_text)
    assert await playlist.refresh(private) == 0
    assert reads == []  # same file: only a stat
    tmp = tmp_path / "ffmpeg-a.m3u8.tmp"  # ffmpeg replaces its playlist by a rename
    tmp.write_text(FFMPEG_PLAYLIST + "#EXTINF:2.000000,\na-2.ts\n")
    tmp.replace(private)
    write_segments(tmp_path, "a-2.ts")
    assert await playlist.refresh(private) == 1
    assert reads == ["ffmpeg-a.m3u8"]
