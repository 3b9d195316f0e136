"""The HLS media playlist format (RFC 8216): segments, parsing ffmpeg's playlists, rendering
ours, and replacing a playlist file atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PLAYLIST_NAME = "index.m3u8"
MEDIA_SUFFIXES = (".ts", ".m4s", ".mp4")
"""File names of stored media: MPEG-TS segments, fMP4 segments and their initialization
segments (``EXT-X-MAP``)."""
FMP4_VERSION = 7
"""``EXT-X-VERSION`` of a playlist with ``EXT-X-MAP`` (RFC 8216 7: at least 6; 7 as the
low-latency playlists declare)."""


@dataclass(frozen=True)
class Segment:
    """One media segment in a playlist."""

    name: str
    """File name, relative to the playlist."""
    duration: float
    """Duration in seconds (``EXTINF``)."""
    discontinuity: bool = False
    """Preceded by ``EXT-X-DISCONTINUITY`` (new encoder session or ffmpeg run)."""
    init: str | None = None
    """File name of the initialization segment (``EXT-X-MAP``) of an fMP4 segment."""

    @property
    def files(self) -> tuple[str, ...]:
        """The stored files the segment needs to play: itself and its initialization segment."""
        return (self.name,) if self.init is None else (self.name, self.init)


def parse_media_playlist(text: str) -> list[Segment]:
    """The segments of a media playlist (RFC 8216 4.3.2.1 ``EXTINF``, 4.3.2.5 ``EXT-X-MAP``)."""
    segments: list[Segment] = []
    duration: float | None = None
    discontinuity = False
    init: str | None = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXT-X-MAP:"):
            uri = _attribute(line[11:], "URI")
            init = uri.rsplit("/", 1)[-1] if uri else None
        elif line.startswith("#EXTINF:"):
            try:
                duration = float(line[8:].split(",", 1)[0])
            except ValueError:
                duration = None
        elif line == "#EXT-X-DISCONTINUITY":
            discontinuity = True
        elif line and not line.startswith("#") and duration is not None:
            segments.append(Segment(line.rsplit("/", 1)[-1], duration, discontinuity, init))
            duration, discontinuity = None, False
    return segments


def playable(listed: Sequence[Segment], stored: Mapping[str, int]) -> list[Segment]:
    """The ``listed`` segments whose files (initialization segment included) are ``stored``."""
    return [s for s in listed if all(name in stored for name in s.files)]


def _attribute(attributes: str, name: str) -> str | None:
    """The quoted-string attribute ``name`` of an attribute list (RFC 8216 4.2)."""
    key = f'{name}="'
    for start in (i for i in range(len(attributes)) if attributes.startswith(key, i)):
        if start == 0 or attributes[start - 1] == ",":
            end = attributes.find('"', start + len(key))
            return attributes[start + len(key) : end] if end >= 0 else None
    return None


def render_playlist(
    segments: list[Segment],
    *,
    target_duration: int,
    media_sequence: int,
    discontinuity_sequence: int = 0,
    ended: bool = False,
    playlist_type: str | None = None,
) -> str:
    """An HLS media playlist (RFC 8216 4.3.3); an ``EXT-X-MAP`` before each fMP4 segment whose
    initialization segment differs from the one before it."""
    fmp4 = any(seg.init is not None for seg in segments)
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{FMP4_VERSION if fmp4 else 3}",
        f"#EXT-X-TARGETDURATION:{target_duration}",
        f"#EXT-X-MEDIA-SEQUENCE:{media_sequence}",
    ]
    if discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    if playlist_type:
        lines.append(f"#EXT-X-PLAYLIST-TYPE:{playlist_type}")
    init: str | None = None
    for seg in segments:
        if seg.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if seg.init is not None and seg.init != init:
            lines.append(f'#EXT-X-MAP:URI="{seg.init}"')
        init = seg.init
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
