"""The HLS media playlist format (RFC 8216): segments, parsing ffmpeg's playlists, rendering
ours, and replacing a playlist file atomically."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PLAYLIST_NAME = "index.m3u8"


@dataclass(frozen=True)
class Segment:
    """One media segment in a playlist."""

    name: str
    """File name, relative to the playlist."""
    duration: float
    """Duration in seconds (``EXTINF``)."""
    discontinuity: bool = False
    """Preceded by ``EXT-X-DISCONTINUITY`` (new encoder session or ffmpeg run)."""


def parse_media_playlist(text: str) -> list[Segment]:
    """The segments of a media playlist written by ffmpeg (RFC 8216 4.3.2.1 ``EXTINF``)."""
    segments: list[Segment] = []
    duration: float | None = None
    discontinuity = False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXTINF:"):
            try:
                duration = float(line[8:].split(",", 1)[0])
            except ValueError:
                duration = None
        elif line == "#EXT-X-DISCONTINUITY":
            discontinuity = True
        elif line and not line.startswith("#") and duration is not None:
            segments.append(Segment(line.rsplit("/", 1)[-1], duration, discontinuity))
            duration, discontinuity = None, False
    return segments


def render_playlist(
    segments: list[Segment],
    *,
    target_duration: int,
    media_sequence: int,
    discontinuity_sequence: int = 0,
    ended: bool = False,
    playlist_type: str | None = None,
) -> str:
    """An HLS media playlist (RFC 8216 4.3.3)."""
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{target_duration}",
        f"#EXT-X-MEDIA-SEQUENCE:{media_sequence}",
    ]
    if discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    if playlist_type:
        lines.append(f"#EXT-X-PLAYLIST-TYPE:{playlist_type}")
    for seg in segments:
        if seg.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(f"#EXTINF:{seg.duration:.3f},")
        lines.append(seg.name)
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` so that readers see the old or the new file, never a partial one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
