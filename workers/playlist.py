"""The live HLS playlist, owned by liverelay rather than by ffmpeg.

ffmpeg cuts MPEG-TS segments and lists them in a private playlist; :class:`LivePlaylist` reads
that list, keeps the sliding window (RFC 8216 6.2.2), deletes segments that left it, and writes
the public ``index.m3u8`` atomically. Owning the playlist lets one live playlist span ffmpeg
restarts and publisher reconnects (marked with ``EXT-X-DISCONTINUITY``, RFC 8216 4.3.2.3) and lets
the recording reuse the same segment files.
"""

from __future__ import annotations

import logging
import math
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

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


class LivePlaylist:
    """The sliding-window live playlist of one stream, fed with segments as ffmpeg cuts them."""

    def __init__(
        self,
        directory: Path,
        *,
        list_size: int,
        segment_seconds: float,
        on_segment: Callable[[Path, Segment], None] | None = None,
    ) -> None:
        self.directory = directory
        self.list_size = list_size
        self._target = max(1, math.ceil(segment_seconds))
        self._window: deque[Segment] = deque()
        self._retired: deque[Segment] = deque()
        self._media_sequence = 0
        self._discontinuity_sequence = 0
        self._pending_discontinuity = False
        self._seen: set[str] = set()
        self._on_segment = on_segment
        self._synced: tuple[str, int, int, int] | None = None
        """Path, inode, mtime and size of the private playlist when every segment it listed was
        taken: the same file again has nothing new."""
        self.ended = False
        self.segments_total = 0
        """Segments published since the playlist began."""

    @property
    def path(self) -> Path:
        """The public playlist file."""
        return self.directory / PLAYLIST_NAME

    @property
    def window(self) -> tuple[Segment, ...]:
        """Segments currently listed."""
        return tuple(self._window)

    def mark_discontinuity(self) -> None:
        """The next segment starts a new encoding (ffmpeg restart or publisher reconnect)."""
        if self.segments_total:
            self._pending_discontinuity = True

    def sync(self, private_playlist: Path) -> int:
        """Add segments that ffmpeg's playlist lists and we have not seen; returns how many.

        Cheap when nothing changed: ffmpeg replaces its playlist by a rename, so an unchanged
        inode, mtime and size mean the same list, and it is not read again (unless a listed
        segment was missing from the disk last time)."""
        try:
            st = os.stat(private_playlist)
            key = (str(private_playlist), st.st_ino, st.st_mtime_ns, st.st_size)
            if key == self._synced:
                return 0
            text = private_playlist.read_text(encoding="utf-8")
        except FileNotFoundError:
            return 0
        added = 0
        complete = True
        for seg in parse_media_playlist(text):
            if seg.name in self._seen:
                continue
            if not (self.directory / seg.name).exists():
                complete = False
                continue
            self.add(seg)
            added += 1
        self._synced = key if complete else None
        if added:
            self.write()
        return added

    def add(self, segment: Segment) -> None:
        """Append ``segment`` to the window, retiring the oldest beyond ``list_size``."""
        if self._pending_discontinuity:
            segment = Segment(segment.name, segment.duration, True)
            self._pending_discontinuity = False
        self._seen.add(segment.name)
        self._window.append(segment)
        self.segments_total += 1
        self._target = max(self._target, math.ceil(segment.duration))
        if self._on_segment is not None:
            self._on_segment(self.directory / segment.name, segment)
        while len(self._window) > self.list_size:
            self._retire(self._window.popleft())

    def _retire(self, segment: Segment) -> None:
        """Drop a segment from the window; its file stays for one more window, for players
        still downloading it (RFC 8216 6.2.2), then is deleted."""
        self._media_sequence += 1
        if segment.discontinuity:
            self._discontinuity_sequence += 1
        self._retired.append(segment)
        while len(self._retired) > self.list_size:
            old = self._retired.popleft()
            self._seen.discard(old.name)
            (self.directory / old.name).unlink(missing_ok=True)

    def write(self) -> None:
        """Write ``index.m3u8``."""
        text = render_playlist(
            list(self._window),
            target_duration=self._target,
            media_sequence=self._media_sequence,
            discontinuity_sequence=self._discontinuity_sequence,
            ended=self.ended,
        )
        write_atomically(self.path, text)

    def end(self) -> None:
        """Close the playlist with ``EXT-X-ENDLIST`` (the live session is over)."""
        self.ended = True
        if self._window:
            self.write()
