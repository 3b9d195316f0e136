"""The transcoded rungs of a low-latency session: each rung's fMP4 (from its own pipe of the
stream's one ffmpeg) becomes its own parts, segments and playlist, as the source's does in
:class:`workers.llhls_output.LowLatencyOutput`; and the playlists that name each other.

Every media playlist of a ladder ends with an ``EXT-X-RENDITION-REPORT`` for each other
rendition (RFC 8216bis 4.4.5.4: where that rendition's playlist is, so a player switching there
can ask a blocking reload for the right part at once). ``index.m3u8`` is the multivariant
playlist (:func:`multivariant`), ``source.m3u8`` and ``<rung>.m3u8`` the media playlists.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ingest.hub import StreamHub
from workers.argv import llhls_argv
from workers.fmp4 import FMP4Error, FragmentReader, InitSegment
from workers.keep_up import KeepUpWatch, ProgressBlocks, parse_speed
from workers.ladder_argv import ladder_llhls_argv
from workers.ladder_playlist import (
    Variant,
    render_multivariant,
    rung_resolution,
    source_resolution,
)
from workers.llhls import LowLatencyStream
from workers.llhls_multivariant import bandwidths
from workers.llhls_playlist import PlaylistCache
from workers.media_pipes import MediaPipe
from workers.renditions import SOURCE, Rung

MAX_RUNG_BOX_BYTES = 16 * 1024 * 1024
"""Bound of one box of a rung's fMP4 (as the source's fragments are bounded)."""

Waiter = Callable[[Callable[[], bool], float], Awaitable[bool]]
"""Waits (bounded) until a condition holds or the stream ended; woken by every change."""


class LowLatencyPlayback(Protocol):
    """What the low-latency playback routes read of one rendition."""

    @property
    def stream(self) -> LowLatencyStream:
        """The rendition's live window."""
        ...

    @property
    def playlists(self) -> PlaylistCache:
        """Its rendered playlists."""
        ...

    @property
    def blocking_seconds(self) -> float:
        """How long a request waits at most for a part or segment to come."""
        ...

    async def wait_for(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until ``ready()`` holds or the stream ended."""
        ...


class ReportingPlaylists(PlaylistCache):
    """A rendition's rendered playlists, each ending with a rendition report of every other
    rendition of the ladder (computed per request: the others move on their own)."""

    def __init__(self, stream: LowLatencyStream) -> None:
        super().__init__(stream)
        self.others: list[tuple[str, LowLatencyStream]] = []
        """The other renditions: their playlist's URI and stream."""

    def get(self, *, skip: bool) -> bytes:
        """The playlist with its rendition reports."""
        body = super().get(skip=skip)
        reports = [report(uri, stream) for uri, stream in self.others]
        return body + "".join(r for r in reports if r).encode()


def report(uri: str, stream: LowLatencyStream) -> str:
    """``EXT-X-RENDITION-REPORT`` of ``stream`` (its last part: LAST-MSN and LAST-PART),
    empty before its first part."""
    position = stream.position
    if position.next_part > 0:
        msn, part = position.next_msn, position.next_part - 1
    else:
        last = stream.segment(position.next_msn - 1)
        if last is None or not last.parts:
            return ""
        msn, part = last.msn, len(last.parts) - 1
    return f'#EXT-X-RENDITION-REPORT:URI="{uri}",LAST-MSN={msn},LAST-PART={part}\n'


class LowLatencyRendition:
    """One transcoded rung's low-latency stream (see the module docstring)."""

    def __init__(self, rung: Rung, stream: LowLatencyStream, waiter: Waiter) -> None:
        self.rung = rung
        self.stream = stream
        self.playlists = ReportingPlaylists(stream)
        self._waiter = waiter

    @property
    def uri(self) -> str:
        """Its media playlist, next to ``index.m3u8``."""
        return f"{self.rung.name}.m3u8"

    @property
    def blocking_seconds(self) -> float:
        """As the source's: three target durations."""
        return 3 * float(self.stream.target_duration)

    async def wait_for(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait as the source's readers do (the output wakes everyone on any change)."""
        return await self._waiter(ready, timeout)

    def reader(
        self,
        now: Callable[[], float],
        changed: Callable[[], None],
        unreadable: Callable[[FMP4Error], None],
    ) -> RungReader:
        """A reader of one ffmpeg run's output for this rung."""
        return RungReader(self.stream, now, changed, unreadable)


@dataclass
class LadderRun:
    """What one ffmpeg run of a low-latency ladder needs: its command, its pipes (each rung's
    media, then ffmpeg's progress) and the readers of the rungs' media."""

    argv: list[str]
    pipes: list[MediaPipe]
    readers: list[RungReader]
    keep_up: KeepUpWatch | None


def ladder_run(
    ffmpeg: str,
    rungs: Sequence[LowLatencyRendition],
    *,
    hevc: bool,
    audio_only: bool = False,
    clock: Callable[[], float],
    wall_clock: Callable[[], float],
    changed: Callable[[], None],
    fell_behind: Callable[[KeepUpWatch], None],
    unreadable: Callable[[LowLatencyRendition, FMP4Error], None],
) -> LadderRun:
    """The pieces of one ffmpeg run for ``rungs`` (none: the source alone, as before);
    ``fell_behind`` is told once if the run's speed stays below real time, ``unreadable``
    once per rung whose fMP4 cannot be read; ``audio_only``: the source has no video (its
    fragments are then cut shorter, :mod:`workers.llhls_part_target`; a ladder has video)."""
    if not rungs:
        return LadderRun(llhls_argv(ffmpeg, hevc=hevc, audio_only=audio_only), [], [], None)
    readers = [r.reader(wall_clock, changed, functools.partial(unreadable, r)) for r in rungs]
    pipes = [MediaPipe.open(r.take) for r in readers]
    watch = KeepUpWatch(clock())
    blocks = ProgressBlocks()

    def progress(chunk: bytes) -> None:
        for block in blocks.feed(chunk):
            if watch.observe(parse_speed(block.get("speed")), clock()):
                fell_behind(watch)

    progress_pipe = MediaPipe.open(progress)
    argv = ladder_llhls_argv(
        ffmpeg,
        rungs=[r.rung for r in rungs],
        fds=[p.write_fd for p in pipes],
        hevc=hevc,
        progress_fd=progress_pipe.write_fd,
    )
    return LadderRun(argv, [*pipes, progress_pipe], readers, watch)


class RungReader:
    """Turns one ffmpeg run's fMP4 for a rung into the rung's parts. An unreadable stream is
    kept as :attr:`error` and told to ``unreadable`` (the output drops the rung); the rest of
    the pipe is read and discarded, so ffmpeg never blocks on it."""

    def __init__(
        self,
        stream: LowLatencyStream,
        now: Callable[[], float],
        changed: Callable[[], None],
        unreadable: Callable[[FMP4Error], None],
    ) -> None:
        self._stream = stream
        self._reader = FragmentReader(max_box_bytes=MAX_RUNG_BOX_BYTES)
        self._now = now
        self._changed = changed
        self._unreadable = unreadable
        self.error: FMP4Error | None = None

    def take(self, chunk: bytes) -> None:
        """A chunk of the rung's pipe."""
        if self.error is not None:
            return
        try:
            events = self._reader.feed(chunk)
        except FMP4Error as exc:
            self.error = exc
            self._unreadable(exc)
            return
        for event in events:
            if isinstance(event, InitSegment):
                self._stream.start_run(event)
            else:
                self._stream.add(event, self._now())
        if events:
            self._changed()


def link(
    source: ReportingPlaylists,
    source_stream: LowLatencyStream,
    rungs: Sequence[LowLatencyRendition],
) -> None:
    """Make every rendition's playlist report every other one."""
    everyone = [(f"{SOURCE}.m3u8", source_stream, source)] + [
        (r.uri, r.stream, r.playlists) for r in rungs
    ]
    for uri, _, playlists in everyone:
        playlists.others = [(u, s) for u, s, _ in everyone if u != uri]


def multivariant(
    hub: StreamHub, source: LowLatencyStream, rungs: Sequence[LowLatencyRendition]
) -> bytes | None:
    """``index.m3u8`` of a low-latency ladder: the variants that have media (``None`` before
    the source has any). ``CODECS`` come from each rendition's own
    initialization segment, so they are what the player gets."""
    video = hub.stats.video
    fps = video.fps if video is not None else None
    variants = []
    entries: list[tuple[str, LowLatencyStream, tuple[int, int] | None]] = [
        (f"{SOURCE}.m3u8", source, source_resolution(video))
    ]
    entries += [(r.uri, r.stream, rung_resolution(r.rung, video)) for r in rungs]
    for uri, stream, resolution in entries:
        if not stream.segments or not stream.maps:
            continue
        peak, average = bandwidths(stream.segments)  # the filling one's before any is complete
        codecs = stream.maps[max(stream.maps)].codecs or None
        variants.append(Variant(uri, peak, average, resolution, codecs, fps))
    if not variants or variants[0].uri != f"{SOURCE}.m3u8":
        return None
    return render_multivariant(variants).encode()
