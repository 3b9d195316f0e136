"""Low-latency HLS packaging (RFC 8216bis), sans I/O: parts and segments from fMP4 fragments.

:class:`LowLatencyStream` takes the events of :class:`workers.fmp4.FragmentReader` (with the
wall-clock time they arrived, passed in) and keeps the live window: every fragment becomes a
part (RFC 8216bis 4.4.4.9), parts group into segments cut at a keyframe once the segment target
duration is reached, and a new initialization segment starts a new run (``EXT-X-DISCONTINUITY``,
and a new ``EXT-X-MAP`` when its bytes differ). With ``default_base_moof`` every fragment is
self-contained, so a segment's bytes are its parts' bytes concatenated.

Part durations (4.4.4.9): every part at most the part target, and at least 85 % of it unless it
is ``INDEPENDENT`` or the last of its segment. ffmpeg writes a short fragment just before a
keyframe (``frag_keyframe``) and at the end of a run; a short fragment that does not start with
a keyframe therefore ends its segment at once, which costs no waiting and usually cuts where the
next keyframe starts the next segment anyway. Fragments cannot be split, so the part target is
chosen to hold the fragments ffmpeg writes at common frame and sample rates
(:mod:`workers.llhls_part_target`); a fragment longer still is counted in
:attr:`LowLatencyStream.overlong_parts` for the caller to report, except the first of a run:
without an edit list ffmpeg lengthens the first sample of the track that starts later by the
gap between the audio and video start times, to keep them in sync.

A segment is also cut, without a keyframe, when the next part would make it round above
``EXT-X-TARGETDURATION`` (a publisher whose keyframe interval exceeds the target: 4.4.3.1), and
the next keyframe then ends such a segment early so that segments realign with keyframes.

Part URIs carry a running part number rather than the segment's: the part announced by
``EXT-X-PRELOAD-HINT`` keeps its URI whether or not a keyframe then starts a new segment.

:func:`reload_decision` answers a blocking playlist reload (6.2.5.2) from a :class:`Position`;
:mod:`workers.llhls_playlist` renders the playlists.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from workers.fmp4 import Fragment, InitSegment
from workers.llhls_part_target import SHORT_PART

DURATION_SLACK = 1e-6
"""Seconds a sum of part durations may fall short of the segment target and still reach it:
ten parts of 0.2 s add up to 1.9999999999999998 in floating point."""


@dataclass(frozen=True)
class Part:
    number: int
    """Running number of the part in the stream: its URI."""
    msn: int
    index: int
    """Part index within its segment (``_HLS_part``)."""
    duration: float
    independent: bool
    data: bytes


@dataclass
class Segment:
    msn: int
    map_id: int
    """Which initialization segment (``EXT-X-MAP``) the segment needs."""
    discontinuity: bool
    program_date_time: float
    """Wall-clock time (Unix seconds) of the segment's first sample."""
    parts: list[Part] = field(default_factory=list)
    complete: bool = False

    @property
    def duration(self) -> float:
        return sum(p.duration for p in self.parts)

    @property
    def data(self) -> bytes:
        return b"".join(p.data for p in self.parts)


@dataclass(frozen=True)
class Position:
    """What a blocking reload is measured against."""

    next_msn: int
    """Sequence number of the segment being filled (all before it are complete)."""
    next_part: int
    """Index in that segment of the part not published yet."""
    ended: bool
    part_target: float

    def has(self, msn: int, part: int | None) -> bool:
        """Whether the playlist holds segment ``msn`` (complete), or its part ``part``."""
        if part is None:
            return msn < self.next_msn
        return msn < self.next_msn or (msn == self.next_msn and part < self.next_part)


class LowLatencyStream:
    """The live window of one stream's low-latency playlist."""

    def __init__(
        self,
        *,
        part_target: float,
        segment_target: float,
        window_segments: int = 12,
        part_segments: int = 3,
        name_tag: str = "",
    ) -> None:
        if not 0 < part_target < segment_target:
            raise ValueError("the part target must be positive and below the segment target")
        self.part_target = part_target
        self.segment_target = segment_target
        self.target_duration = math.ceil(segment_target)
        self.window_segments = max(window_segments, 2)
        self.part_segments = part_segments
        self.name_tag = name_tag
        """Starts the names of this stream's media (unique per session and owner)."""
        self.segments: deque[Segment] = deque()
        self.discontinuity_sequence = 0
        self.maps: dict[int, InitSegment] = {}
        self.ended = False
        self.version = 0
        """Bumped on every change a reader can see."""
        self._map_id = -1
        self._next_msn = 0
        self._next_part_number = 0
        self._open: Segment | None = None
        self.overlong_parts = 0
        """Parts longer than the part target (fragments cannot be split), but a run's first."""
        self._new_run = False
        self._anchor: tuple[float, float] | None = None  # wall clock, media time of a run

    @property
    def position(self) -> Position:
        open_parts = len(self._open.parts) if self._open else 0
        msn = self._open.msn if self._open else self._next_msn
        return Position(msn, open_parts, self.ended, self.part_target)

    @property
    def next_part_number(self) -> int:
        """The running number of the next part (``EXT-X-PRELOAD-HINT``)."""
        return self._next_part_number

    @property
    def media_sequence(self) -> int:
        return self.segments[0].msn if self.segments else self._next_msn

    def part(self, number: int) -> Part | None:
        """The part with this running number, while it is in the window."""
        for seg in reversed(self.segments):
            if seg.parts and seg.parts[0].number <= number:
                index = number - seg.parts[0].number
                return seg.parts[index] if index < len(seg.parts) else None
        return None

    def segment(self, msn: int) -> Segment | None:
        """The complete segment ``msn``, while it is in the window."""
        if not self.segments:
            return None
        index = msn - self.segments[0].msn
        if 0 <= index < len(self.segments) and self.segments[index].complete:
            return self.segments[index]
        return None

    def start_run(self, init: InitSegment) -> list[Segment]:
        """A new ffmpeg run (or its first): returns the segments this completes."""
        done = self._close()
        if self._map_id < 0 or init.data != self.maps[self._map_id].data:
            self._map_id += 1
            self.maps[self._map_id] = init
            self._retire_maps()
        self._new_run = self._map_id > 0 or bool(self.segments)
        self._anchor = None
        self.version += 1
        return done

    def add(self, fragment: Fragment, now: float) -> list[Segment]:
        """A fragment that arrived at wall-clock time ``now``: returns the segments it completes."""
        if self._map_id < 0:
            raise ValueError("a fragment before the initialization segment")
        first_of_run = self._anchor is None
        if self._anchor is None:
            self._anchor = (now - fragment.duration, fragment.decode_time)
        duration, independent = fragment.duration, fragment.starts_with_keyframe
        done: list[Segment] = []
        seg = self._open
        if seg is not None:
            realign = not seg.parts[0].independent
            full = seg.duration >= self.segment_target - DURATION_SLACK
            if independent and (full or realign):
                done += self._close()
            elif seg.duration + duration >= self.target_duration + 0.5:
                done += self._close()
        if self._open is None:
            self._open_segment(fragment)
        seg = self._open
        assert seg is not None
        part = Part(
            self._next_part_number, seg.msn, len(seg.parts), duration, independent, fragment.data
        )
        self._next_part_number += 1
        seg.parts.append(part)
        if duration > self.part_target and not first_of_run:
            self.overlong_parts += 1
        if duration < SHORT_PART * self.part_target and not independent:
            done += self._close()  # a short part may only be the last of its segment
        self.version += 1
        return done

    def end(self) -> list[Segment]:
        """The stream ended (``EXT-X-ENDLIST``): returns the segments this completes."""
        done = self._close()
        self.ended = True
        self.version += 1
        return done

    def _open_segment(self, first: Fragment) -> None:
        wall, media = self._anchor or (0.0, first.decode_time)
        seg = Segment(self._next_msn, self._map_id, self._new_run, wall + first.decode_time - media)
        self._next_msn += 1
        self._new_run = False
        self._open = seg
        self.segments.append(seg)
        while len(self.segments) > self.window_segments:
            if self.segments.popleft().discontinuity:
                self.discontinuity_sequence += 1
        self._retire_maps()

    def _close(self) -> list[Segment]:
        seg, self._open = self._open, None
        if seg is None:
            return []
        seg.complete = True
        return [seg]

    def _retire_maps(self) -> None:
        keep = {s.map_id for s in self.segments} | {self._map_id}
        for map_id in [m for m in self.maps if m not in keep]:
            del self.maps[map_id]


@dataclass(frozen=True)
class Answer:
    """Answer now; ``skip``: with a delta update (``_HLS_skip=YES``)."""

    skip: bool


@dataclass(frozen=True)
class Wait:
    """Hold the request until :meth:`Position.has` (``msn``, ``part``), then answer."""

    msn: int
    part: int | None
    skip: bool


@dataclass(frozen=True)
class Reject:
    """Answer 400 Bad Request."""

    reason: str


def reload_decision(query: dict[str, str], position: Position) -> Answer | Wait | Reject:
    """A playlist request with the query parameters ``query`` (RFC 8216bis 6.2.5.2, 6.2.5.1)."""
    skip_value = query.get("_HLS_skip")
    if skip_value not in (None, "YES", "v2"):
        return Reject(f"_HLS_skip must be YES or v2, not {skip_value!r}")
    skip = skip_value is not None
    raw_msn, raw_part = query.get("_HLS_msn"), query.get("_HLS_part")
    if raw_msn is None:
        if raw_part is not None:
            return Reject("_HLS_part without _HLS_msn")
        return Answer(skip)
    msn = _number(raw_msn)
    part = _number(raw_part) if raw_part is not None else None
    if msn is None or (raw_part is not None and part is None):
        return Reject("_HLS_msn and _HLS_part must be decimal integers")
    if position.ended or position.has(msn, part):
        return Answer(skip)
    if msn > position.next_msn + 2:
        return Reject(f"_HLS_msn={msn} is more than two segments ahead of the playlist")
    if part is not None:
        limit = 3 / position.part_target if position.part_target < 1 else 3
        ahead = part - position.next_part + 1 if msn == position.next_msn else part + 1
        if ahead > limit:
            return Reject(f"_HLS_part={part} is beyond the advance part limit")
    return Wait(msn, part, skip)


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() and text.isascii() and len(text) <= 18 else None
