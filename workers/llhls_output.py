"""The low-latency HLS output: one supervised ffmpeg per live stream, FLV on stdin, fragmented
MP4 on stdout, packaged in memory as low-latency HLS (:mod:`workers.llhls`).

ffmpeg writes an initialization segment and then a self-contained fragment about every 200 ms
(:func:`workers.argv.llhls_argv`; 190 ms without video, :mod:`workers.llhls_part_target`); a
:class:`~workers.fmp4.FragmentReader` per ffmpeg run turns its stdout into events and one
:class:`~workers.llhls.LowLatencyStream` per path keeps the live window, so nothing is written
to disk and memory is bounded by the window. Every ffmpeg start
(a restart after a failure, a publisher reconnecting) begins a new run: the playlist continues
with ``EXT-X-DISCONTINUITY``, and a new ``EXT-X-MAP`` when the initialization segment differs.

Readers (the playback routes) wait for a part or segment with :meth:`LowLatencyOutput.wait_for`,
woken by every change rather than polling, a batch per turn of the event loop
(:mod:`workers.wake_batches`): every viewer waits for the same next part.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from config.settings import Settings
from ingest.hub import StreamHub, Subscription
from workers.feed import FeedEnd, feed_subscription, idle_input_is_progress, run_process
from workers.fmp4 import FMP4Error, FragmentReader, InitSegment
from workers.hls import playback_supervisor
from workers.keep_up import KeepUpWatch
from workers.llhls import LowLatencyStream, Segment
from workers.llhls_ladder import (
    LowLatencyRendition,
    ReportingPlaylists,
    ladder_run,
    link,
    multivariant,
)
from workers.llhls_part_target import PART_TARGET
from workers.llhls_playlist import delta_window_segments
from workers.process import FFmpegProcess
from workers.renditions import SOURCE
from workers.rung_decision import decide_rungs
from workers.supervisor import RunContext, RunEnd
from workers.wake_batches import WakeBatches

log = logging.getLogger(__name__)

BLOCKING_TARGET_DURATIONS = 3
"""A blocking playlist reload, or a request for a part not there yet, waits at most this many
target durations (RFC 8216bis 6.2.5.2 suggests three) and is then answered 503."""
MAX_FRAGMENT_BYTES = 16 * 1024 * 1024
"""Bound of one fragment (200 ms of media: far below at any sane bitrate)."""


class LowLatencyOutput:
    """Keeps a stream's low-latency playlist fed for one live session (see the module
    docstring). The interface the path's outputs use is :class:`workers.hls.HLSOutput`'s."""

    name = "hls"

    def __init__(
        self,
        settings: Settings,
        *,
        ffmpeg: str,
        hub: StreamHub,
        wall_clock: Callable[[], float] = time.time,
        on_segments: Callable[[list[Segment]], None] | None = None,
        name_tag: str = "",
        renditions: Sequence[str] = (SOURCE,),
    ) -> None:
        """``on_segments``: told the segments each change completes (a recording);
        ``name_tag``: starts every media name (the session and ownership: names are served
        immutable, so no later session may reuse them); ``renditions``: the ladder asked for
        (the rungs are :mod:`workers.llhls_ladder`'s, decided at the first ffmpeg run)."""
        self._settings = settings
        self._requested = tuple(renditions)
        self._name_tag = name_tag
        self.rungs: tuple[LowLatencyRendition, ...] = ()
        """The session's transcoded rungs (empty: the source's playlist is ``index.m3u8``)."""
        self.dropped: list[LowLatencyRendition] = []
        """Rungs dropped because the transcoding could not keep up."""
        self.keep_up: KeepUpWatch | None = None
        """How the current ffmpeg run of a ladder keeps up (``None`` without a rung)."""
        self._decided = False
        self._on_segments = on_segments
        self._ffmpeg = ffmpeg
        self._hub = hub
        self._wall_clock = wall_clock
        self.stream = LowLatencyStream(
            part_target=PART_TARGET,
            segment_target=settings.hls_segment_seconds,
            window_segments=max(
                settings.hls_list_size, delta_window_segments(settings.hls_segment_seconds)
            ),
            name_tag=name_tag,
        )
        self.playlists: ReportingPlaylists = ReportingPlaylists(self.stream)
        """The rendered playlists, for the playback routes."""
        self._changed = WakeBatches()
        self.ended_at: float | None = None
        """Monotonic time the playlist ended (``EXT-X-ENDLIST``)."""
        self._sub: Subscription | None = None
        self.supervisor = playback_supervisor(settings, hub, self._run)

    @property
    def dropped_frames(self) -> int:
        """Frames this output dropped because it lagged."""
        return self._sub.dropped_frames if self._sub else 0

    @property
    def blocking_seconds(self) -> float:
        """How long a request waits at most for a part or segment to come."""
        return BLOCKING_TARGET_DURATIONS * float(self.stream.target_duration)

    @property
    def renditions(self) -> tuple[str, ...]:
        """The renditions the session produces, ``source`` first (empty until decided)."""
        return (SOURCE, *(r.rung.name for r in self.rungs)) if self._decided else ()

    @property
    def has_ladder(self) -> bool:
        """Whether the session has (or had) rungs: ``index.m3u8`` is then multivariant."""
        return bool(self.rungs or self.dropped)

    def multivariant(self) -> bytes | None:
        """``index.m3u8`` of a ladder (``None``: no rung, or no complete segment yet)."""
        if not self.has_ladder:
            return None
        return multivariant(self._hub, self.stream, self.rungs)

    def rendition(self, name: str) -> LowLatencyRendition | None:
        """The rung whose playlist is ``name`` (``480p.m3u8``), if the session has (or had)
        it: a dropped rung's ended playlist is still served."""
        return next((r for r in (*self.rungs, *self.dropped) if r.uri == name), None)

    def _fell_behind(self, watch: KeepUpWatch) -> None:
        """The transcoding cannot keep up: drop the top rung."""
        if self.rungs:
            log.warning(
                "stream %s: the transcoding runs at %.2fx, below real time; dropping rendition "
                "%s and starting ffmpeg again without it",
                self._hub.stream_id,
                watch.speed or 0.0,
                self.rungs[0].rung.name,
            )
            self._drop(self.rungs[0])

    def _unreadable(self, rung: LowLatencyRendition, error: FMP4Error) -> None:
        """A rung's fMP4 cannot be read: drop that rung (its playlist would stall)."""
        if rung in self.rungs:
            log.error(
                "stream %s: ffmpeg's fMP4 output of %s: %s; dropping that rendition and "
                "starting ffmpeg again without it",
                self._hub.stream_id,
                rung.rung.name,
                error,
            )
            self._drop(rung)

    def _drop(self, rung: LowLatencyRendition) -> None:
        """End ``rung``'s playlist and start ffmpeg again without it (the source and the other
        rungs continue after a discontinuity)."""
        self.rungs = tuple(r for r in self.rungs if r is not rung)
        self.dropped.append(rung)
        rung.stream.end()
        link(self.playlists, self.stream, self.rungs)
        self.notify_changed()
        if self._sub is not None:
            self._sub.request_break()

    async def _decide(self) -> None:
        if self._decided:
            return
        rungs = await decide_rungs(self._requested, self._hub)
        if self._decided:
            return
        self._decided = True
        self.rungs = tuple(
            LowLatencyRendition(
                rung,
                LowLatencyStream(
                    part_target=self.stream.part_target,
                    segment_target=self.stream.segment_target,
                    window_segments=self.stream.window_segments,
                    name_tag=f"{self._name_tag}-{rung.name}" if self._name_tag else rung.name,
                ),
                self.wait_for,
            )
            for rung in rungs
        )
        if self.rungs:
            link(self.playlists, self.stream, self.rungs)

    def start(self) -> None:
        """Subscribe to the hub and start the supervised ffmpeg."""
        self._sub = self._hub.subscribe(self.name)
        self.supervisor.start()

    async def stop(self, *, timeout: float) -> None:
        """Let ffmpeg finish what the hub already delivered (bounded), then stop for good; the
        playlist ends (``EXT-X-ENDLIST``) and every waiting request is answered."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.supervisor.wait_done()
        await self.supervisor.stop()
        self._end()
        if self._sub is not None:
            self._hub.unsubscribe(self._sub)

    def roll_over(self) -> None:
        """The publisher reconnected: end the current ffmpeg run and start a new one (a new
        run of the playlist, after ``EXT-X-DISCONTINUITY``)."""
        if self._sub is not None:
            self._sub.request_break()

    async def wait_for(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until ``ready()`` holds or the stream ended;
        returns whether ``ready()`` holds. Woken by every change of the stream."""
        try:
            async with asyncio.timeout(timeout):
                while not ready() and not self.stream.ended:
                    await self._changed.waiter()
        except TimeoutError:
            pass
        return ready()

    def _end(self) -> None:
        if not self.stream.ended:
            for rung in self.rungs:
                rung.stream.end()
            self._completed(self.stream.end())
            self.ended_at = time.monotonic()
            self.notify_changed()

    def _completed(self, segments: list[Segment]) -> None:
        if segments and self._on_segments is not None:
            self._on_segments(segments)

    def notify_changed(self) -> None:
        """Wake every reader waiting in :meth:`wait_for` (the stream changed), a batch per
        turn of the event loop."""
        self._changed.wake()

    async def _run(self, ctx: RunContext) -> RunEnd | None:
        assert self._sub is not None
        await self._decide()
        if ctx.attempt > 1:
            self._hub.restart(self._sub)
        while True:
            end = await self._run_ffmpeg(ctx)
            if end is not FeedEnd.BREAK:
                break
            self._hub.restart(self._sub)  # a publisher reconnect: a new run for the new one
        if end is FeedEnd.INPUT_ENDED:
            self._end()
            return RunEnd.INPUT_ENDED
        return None

    async def _run_ffmpeg(self, ctx: RunContext) -> FeedEnd:
        """One ffmpeg run, until the publish ends, a break or the stop."""
        assert self._sub is not None
        sub = self._sub
        video = self._hub.stats.video
        hevc = video is not None and video.codec == "hevc"
        tracks = self._hub.tracks
        rungs = self.rungs
        run = ladder_run(
            self._ffmpeg,
            rungs,
            hevc=hevc,
            audio_only=tracks is not None and not tracks.has_video,
            clock=self._hub.clock,
            wall_clock=self._wall_clock,
            changed=self.notify_changed,
            fell_behind=self._fell_behind,
            unreadable=self._unreadable,
        )
        self.keep_up = run.keep_up
        argv, pipes = run.argv, run.pipes
        reader = FragmentReader(max_box_bytes=MAX_FRAGMENT_BYTES)
        failed: asyncio.Future[FeedEnd] = asyncio.get_running_loop().create_future()
        overlong_before = self.stream.overlong_parts

        def take(chunk: bytes) -> None:
            if failed.done():
                return
            try:
                events = reader.feed(chunk)
            except FMP4Error as exc:
                failed.set_exception(exc)
                return
            for event in events:
                if isinstance(event, InitSegment):
                    self._completed(self.stream.start_run(event))
                else:
                    self._completed(self.stream.add(event, self._wall_clock()))
                    ctx.progress()
            if events:
                self.notify_changed()

        async def feed(process: FFmpegProcess) -> FeedEnd:
            feeding = asyncio.ensure_future(feed_subscription(sub, process))
            try:
                await asyncio.wait({feeding, failed}, return_when=asyncio.FIRST_COMPLETED)
                if failed.done():
                    return failed.result()  # raises the reader's error
                return feeding.result()
            finally:
                feeding.cancel()

        process = FFmpegProcess(
            argv, name=f"{self._hub.stream_id}/hls", stdout_sink=take, media_pipes=pipes
        )
        idle_watch = asyncio.create_task(idle_input_is_progress(ctx, self._hub))
        try:
            return await run_process(ctx, process, feed)
        finally:
            idle_watch.cancel()
            if not failed.done():
                failed.cancel()
            elif not failed.cancelled() and failed.exception() is not None:
                log.error(
                    "stream %s: ffmpeg's fMP4 output: %s", self._hub.stream_id, failed.exception()
                )
            overlong = self.stream.overlong_parts - overlong_before
            if overlong:
                log.warning(
                    "stream %s: %d parts longer than the part target in this ffmpeg run "
                    "(a jump in the publisher's timestamps)",
                    self._hub.stream_id,
                    overlong,
                )


class EndedOutputs:
    """The low-latency outputs of this node's paths, remembered while they are played, so that
    for ``linger`` seconds after its path ended a playlist (with ``EXT-X-ENDLIST``) and its media
    are still served: players reach the end as they do with standard mode's files."""

    def __init__(self, linger: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._linger = linger
        self._clock = clock
        self._outputs: dict[str, LowLatencyOutput] = {}

    def remember(self, stream_id: str, output: LowLatencyOutput) -> None:
        """``output`` is the live output of ``stream_id`` (forgets the outputs past linger)."""
        if self._outputs.get(stream_id) is output:
            return
        self._outputs[stream_id] = output
        for other in [k for k, v in self._outputs.items() if self._expired(v)]:
            del self._outputs[other]

    def get(self, stream_id: str) -> LowLatencyOutput | None:
        """The output of ``stream_id``'s path that ended less than ``linger`` seconds ago."""
        output = self._outputs.get(stream_id)
        if output is None or output.ended_at is None:
            return None
        if self._expired(output):
            del self._outputs[stream_id]
            return None
        return output

    def _expired(self, output: LowLatencyOutput) -> bool:
        ended = output.ended_at
        return ended is not None and self._clock() - ended > self._linger
