"""Where a thumbnail's frame comes from.

- A live stream in standard mode: the newest MPEG-TS segment of its live playlist, on disk
  (segments start on a keyframe, so its first frame decodes on its own).
- A live stream in low-latency mode: from memory, the initialization segment and the first part
  of the newest segment that starts with an independent part (a keyframe).
- A recording: the segment its playlist lists at the requested time (with its initialization
  segment, for fMP4), and the offset of that time into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workers.llhls import LowLatencyStream
from workers.m3u8 import PLAYLIST_NAME, Segment, parse_media_playlist
from workers.thumbnail_codec import NoVideo, UndecodableMedia

DEFAULT_RECORDING_SECONDS = 2.0
"""A recording's thumbnail without ``time`` shows this point (or its middle, when shorter than
twice this): past the first frames, which are often black or a title."""
MAX_SEGMENT_BYTES = 64 * 1024 * 1024
"""A segment larger than this is not decoded (no sane segment comes near)."""


class TimeBeyondEnd(ValueError):
    """The requested time is past the recording's end."""

    def __init__(self, at: float, duration: float) -> None:
        super().__init__(f"time {at:g} is beyond the end of the recording ({duration:.3f} s)")
        self.duration = duration


@dataclass(frozen=True)
class RecordedPoint:
    """Where a time of a recording is."""

    segment: Segment
    """The segment covering it."""
    offset: float
    """Seconds from the segment's start."""


def latest_live_segment(live_dir: Path, stream_id: str) -> bytes | None:
    """The newest segment of the stream's live playlist on disk (``None``: no playlist or no
    segment yet). Blocking: call it in a thread."""
    directory = live_dir / stream_id
    try:
        text = (directory / PLAYLIST_NAME).read_text(encoding="utf-8")
    except OSError:
        return None
    for segment in reversed(parse_media_playlist(text)[-2:]):
        data = read_segment(directory, segment.name)
        if data is not None:
            return data
    return None


def read_segment(directory: Path, name: str) -> bytes | None:
    """The bytes of segment ``name`` in ``directory`` (``None`` if it is gone or too large).
    Blocking."""
    path = directory / Path(name).name
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_SEGMENT_BYTES + 1)
    except OSError:
        return None
    return data if len(data) <= MAX_SEGMENT_BYTES else None


def latest_low_latency_media(stream: LowLatencyStream) -> bytes | None:
    """Initialization segment + first part of the newest segment that starts on a keyframe
    (``None``: none yet). Raises :class:`NoVideo` when the stream has no video track."""
    for segment in reversed(stream.segments):
        if not segment.parts or not segment.parts[0].independent:
            continue
        init = stream.maps.get(segment.map_id)
        if init is None:
            continue
        if init.video is None:
            raise NoVideo("the stream has no video")
        return init.data + segment.parts[0].data
    return None


def recorded_point(playlist: str, at: float | None) -> RecordedPoint:
    """The segment of the recording whose ``playlist`` is given covering ``at`` seconds from its
    start (``None``: :data:`DEFAULT_RECORDING_SECONDS`). Raises :class:`TimeBeyondEnd`, or
    :class:`UndecodableMedia` when the playlist lists no segment."""
    segments = parse_media_playlist(playlist)
    if not segments:
        raise UndecodableMedia("the recording has no segment yet")
    duration = sum(s.duration for s in segments)
    if at is None:
        at = min(DEFAULT_RECORDING_SECONDS, duration / 2)
    if at > duration:
        raise TimeBeyondEnd(at, duration)
    start = 0.0
    for segment in segments:
        if at < start + segment.duration:
            return RecordedPoint(segment, at - start)
        start += segment.duration
    last = segments[-1]
    return RecordedPoint(last, last.duration)
