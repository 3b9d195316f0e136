"""Rendering the low-latency media playlist of a :class:`workers.llhls.LowLatencyStream`
(RFC 8216bis 4.4), full or as a delta update (``_HLS_skip=YES``, 6.2.5.1), and the URIs of its
initialization segments, parts and segments."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from workers.llhls import LowLatencyStream, Segment

VERSION = 9
"""EXT-X-SKIP needs version 9 (RFC 8216bis 8); EXT-X-MAP in a media playlist, version 6."""
PART_HOLD_BACK_PARTS = 3
"""PART-HOLD-BACK in part targets: at least three (RFC 8216bis 4.4.3.8)."""
SKIP_TARGET_DURATIONS = 6
"""CAN-SKIP-UNTIL in target durations: at least six (RFC 8216bis 4.4.3.8)."""
SKIP_MARGIN_SEGMENTS = 2
"""Segments a low-latency window keeps beyond CAN-SKIP-UNTIL and the one being filled: what a
delta update skips (:func:`delta_window_segments`)."""


def map_uri(map_id: int, tag: str = "") -> str:
    return f"{_prefix(tag)}init-{map_id}.mp4"


def part_uri(number: int, tag: str = "") -> str:
    return f"{_prefix(tag)}part-{number}.m4s"


def segment_uri(msn: int, tag: str = "") -> str:
    return f"{_prefix(tag)}seg-{msn}.m4s"


def _prefix(tag: str) -> str:
    """Names start with the stream's :attr:`~workers.llhls.LowLatencyStream.name_tag`: media is
    served immutable, so a later session (or owner) must never reuse an earlier one's names."""
    return f"{tag}-" if tag else ""


def skip_until(stream: LowLatencyStream) -> float:
    """CAN-SKIP-UNTIL, in seconds."""
    return float(SKIP_TARGET_DURATIONS * stream.target_duration)


def delta_window_segments(segment_target: float) -> int:
    """The fewest segments a live window of ``segment_target`` second segments keeps so that a
    delta update skips some: those within CAN-SKIP-UNTIL of the playlist's end, the one being
    filled and :data:`SKIP_MARGIN_SEGMENTS` more (9 for 2 s segments). A shorter window
    answers ``_HLS_skip=YES`` with the whole playlist, every segment being too recent."""
    until = SKIP_TARGET_DURATIONS * math.ceil(segment_target)
    return math.ceil(until / segment_target) + 1 + SKIP_MARGIN_SEGMENTS


def render(stream: LowLatencyStream, *, skip: bool = False) -> str:
    """The media playlist; with ``skip``, a delta update replacing the segments that end more
    than CAN-SKIP-UNTIL before the end of the playlist by ``EXT-X-SKIP``."""
    segments = [s for s in stream.segments if s.parts]
    skipped = _skippable(segments, skip_until(stream)) if skip else 0
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{VERSION}",
        f"#EXT-X-TARGETDURATION:{stream.target_duration}",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,"
        f"CAN-SKIP-UNTIL={skip_until(stream):.1f},"
        f"PART-HOLD-BACK={PART_HOLD_BACK_PARTS * stream.part_target:.3f}",
        f"#EXT-X-PART-INF:PART-TARGET={stream.part_target:.3f}",
        f"#EXT-X-MEDIA-SEQUENCE:{stream.media_sequence}",
    ]
    if stream.discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{stream.discontinuity_sequence}")
    if skipped:
        lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
    complete = [s.msn for s in segments if s.complete]
    with_parts = set(complete[-stream.part_segments :]) if stream.part_segments else set()
    current_map = None
    for seg in segments[skipped:]:
        if seg.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if seg.map_id != current_map:
            lines.append(f'#EXT-X-MAP:URI="{map_uri(seg.map_id, stream.name_tag)}"')
            current_map = seg.map_id
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date_time(seg.program_date_time)}")
        if seg.msn in with_parts or not seg.complete:
            lines.extend(_parts(seg, stream.name_tag, round(stream.part_target, 3)))
        if seg.complete:
            lines.append(f"#EXTINF:{seg.duration:.5f},")
            lines.append(segment_uri(seg.msn, stream.name_tag))
    if stream.ended:
        lines.append("#EXT-X-ENDLIST")
    else:
        hint = part_uri(stream.next_part_number, stream.name_tag)
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{hint}"')
    return "\n".join(lines) + "\n"


class PlaylistCache:
    """The rendered playlists of a stream, as bytes, full and as a delta update, kept until the
    stream changes (:attr:`LowLatencyStream.version`): the blocking reloads of every viewer,
    woken by the same new part, are answered with the bytes rendered once."""

    def __init__(self, stream: LowLatencyStream) -> None:
        self._stream = stream
        self._version = -1
        self._bodies: dict[bool, bytes] = {}

    def get(self, *, skip: bool) -> bytes:
        """What :func:`render` returns for ``skip``, encoded."""
        if self._stream.version != self._version:
            self._version = self._stream.version
            self._bodies.clear()
        body = self._bodies.get(skip)
        if body is None:
            body = self._bodies[skip] = render(self._stream, skip=skip).encode()
        return body


def _skippable(segments: list[Segment], until: float) -> int:
    """How many leading segments end at least ``until`` seconds before the playlist's end."""
    remaining = sum(s.duration for s in segments)
    count = 0
    for seg in segments:
        remaining -= seg.duration
        if not seg.complete or remaining < until:
            break
        count += 1
    return count


def _parts(seg: Segment, tag: str, part_target: float) -> list[str]:
    """The segment's ``EXT-X-PART`` lines (``part_target`` as declared, in whole ms). A
    fragment stretched by a jump in the publisher's timestamps can run a few milliseconds past
    the part target and cannot be split: its declared duration is capped at the target (RFC
    8216bis 4.4.4.9: at most PART-TARGET), while the segment's ``EXTINF`` keeps the real sum."""
    return [
        f"#EXT-X-PART:DURATION={min(p.duration, part_target):.5f},"
        f'URI="{part_uri(p.number, tag)}"' + (",INDEPENDENT=YES" if p.independent else "")
        for p in seg.parts
    ]


def _date_time(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
