"""The HLS output: one supervised ffmpeg per live stream, FLV on stdin, MPEG-TS segments out.

ffmpeg only cuts segments; :class:`~workers.playlist.LivePlaylist` turns them into the public
playlist. Each ffmpeg run writes segments named ``<session>-<generation>-<attempt>-<part>-<n>.ts``
(the generation of the stream's ownership lease), so a restarted ffmpeg never reuses a name a
cache may hold, nor a node continuing another node's session a name of that node's recording;
the playlist marks the restart with ``EXT-X-DISCONTINUITY``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Mapping, Sequence

from config.settings import Settings
from ingest.hub import StreamHub, Subscription
from workers.feed import FeedEnd, feed_subscription, idle_input_is_progress, run_process
from workers.keep_up import KeepUpWatch, parse_speed
from workers.ladder_hls import RenditionSet
from workers.playlist import LivePlaylist
from workers.process import FFmpegProcess
from workers.renditions import SOURCE
from workers.supervisor import PermanentOutputError, Run, RunContext, RunEnd, Supervisor

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
"""How often ffmpeg's playlist is looked at (unchanged, a look costs one ``stat``)."""
FIRST_SEGMENT_POLL_SECONDS = 0.05
"""Until a run's first segment is listed, ffmpeg's playlist is polled faster: the first
playable segment comes up to :data:`POLL_SECONDS` sooner."""
AFTER_KEYFRAME_POLL_SECONDS = 0.01
AFTER_KEYFRAME_WINDOW_SECONDS = 0.5
"""ffmpeg cuts a segment when a keyframe arrives, so for this long after the hub passes one on,
the playlist is polled every :data:`AFTER_KEYFRAME_POLL_SECONDS` until the segment shows: a
new segment is listed about 10 ms after ffmpeg wrote it rather than 100 ms on average."""
PLAYLIST_IO_TIMEOUT = 5.0
"""When a run or the output stops, how long to wait for the playlist's file work (normally
milliseconds); a hung disk must not hang the shutdown. The work still completes, in order."""


class PollSchedule:
    """When to look at ffmpeg's playlist next: every :data:`FIRST_SEGMENT_POLL_SECONDS` until
    the first segment, every :data:`POLL_SECONDS` after that, and every
    :data:`AFTER_KEYFRAME_POLL_SECONDS` for a while after a keyframe that can end a segment (one
    that comes at least 80 % of a segment after the last one: with a short GOP, most keyframes
    cannot). Times are the hub's clock."""

    def __init__(self, segment_seconds: float, now: float) -> None:
        self._min_gap = 0.8 * segment_seconds
        self._first = True
        self._last_segment_at = now
        self._fast_until = 0.0

    def keyframe(self, now: float) -> bool:
        """ffmpeg was handed a keyframe; returns whether to look soon."""
        if not self._first and now - self._last_segment_at < self._min_gap:
            return False
        self._fast_until = now + AFTER_KEYFRAME_WINDOW_SECONDS
        return True

    def looked(self, now: float, *, found: bool) -> float:
        """Seconds until the next look, after one that ``found`` a new segment or not."""
        if found:
            self._first, self._last_segment_at, self._fast_until = False, now, 0.0
            return POLL_SECONDS
        if self._first:
            return FIRST_SEGMENT_POLL_SECONDS
        return AFTER_KEYFRAME_POLL_SECONDS if now < self._fast_until else POLL_SECONDS


def playback_supervisor(settings: Settings, hub: StreamHub, run: Run) -> Supervisor:
    """The supervisor of a stream's live playback output, MPEG-TS or low-latency: restarted
    quickly (playback is what viewers wait on), stalled after the settings' stall time."""
    return Supervisor(
        f"{hub.stream_id}/hls",
        run,
        stall_seconds=settings.output_stall_seconds,
        backoff_initial=0.5,
        backoff_max=settings.output_backoff_max_seconds,
        clock=hub.clock,
    )


class HLSOutput:
    """Keeps a stream's live playlist fed for one live session. Every time it takes (stalls,
    polls) is on the hub's clock."""

    name = "hls"

    def __init__(
        self,
        settings: Settings,
        *,
        ffmpeg: str,
        hub: StreamHub,
        playlist: LivePlaylist,
        session_tag: str,
        renditions: Sequence[str] = (SOURCE,),
    ) -> None:
        """``renditions``: the ladder the stream asks for (``playlist`` is the source's)."""
        self._settings = settings
        self._ffmpeg = ffmpeg
        self._hub = hub
        self.playlist = playlist
        self.renditions = RenditionSet(
            playlist, requested=renditions, segment_seconds=settings.hls_segment_seconds
        )
        """The session's renditions (the source's playlist and any rungs')."""
        self._tag = session_tag
        self.keep_up: KeepUpWatch | None = None
        """How the current ffmpeg run of a ladder keeps up (``None`` without a rung)."""
        self._sub: Subscription | None = None
        self._clock = hub.clock
        self.supervisor = playback_supervisor(settings, hub, self._run)

    @property
    def dropped_frames(self) -> int:
        """Frames this output dropped because it lagged."""
        return self._sub.dropped_frames if self._sub else 0

    def start(self) -> None:
        """Subscribe to the hub and start the supervised ffmpeg."""
        self._sub = self._hub.subscribe(self.name)
        self.supervisor.start()

    async def stop(self, *, timeout: float) -> None:
        """Let ffmpeg finish what the hub already delivered (bounded: the output is
        ``finished`` then, unless it failed), then stop for good."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.supervisor.wait_done()
        await self.supervisor.stop()
        await self.renditions.close(timeout=PLAYLIST_IO_TIMEOUT)
        if self._sub is not None:
            self._hub.unsubscribe(self._sub)

    def roll_over(self) -> None:
        """The publisher reconnected: end the current ffmpeg run where the old publisher
        stopped and start a new one, so the break falls on a segment boundary and is marked
        with ``EXT-X-DISCONTINUITY``. The playlist keeps its media sequence."""
        if self._sub is not None:
            self._sub.request_break()

    async def _run(self, ctx: RunContext) -> RunEnd | None:
        assert self._sub is not None
        await asyncio.to_thread(self._check_storage)
        await self.renditions.decide(self._hub)
        if ctx.attempt > 1:
            self._hub.restart(self._sub)
            self.renditions.mark_discontinuity()
        part = 0
        while True:
            end = await self._run_ffmpeg(ctx, f"{self._tag}-{ctx.attempt}-{part}")
            if end is not FeedEnd.BREAK:
                break
            part += 1  # a publisher reconnect: the next publisher continues in a new run
            self._hub.restart(self._sub)
            self.renditions.mark_discontinuity()
        # INPUT_ENDED: ffmpeg wrote its last segment and the output is finished.
        return RunEnd.INPUT_ENDED if end is FeedEnd.INPUT_ENDED else None

    def _check_storage(self) -> None:
        """Fail for good (not retry) when the live directory cannot be written: no restart of
        ffmpeg fixes a read-only or missing disk."""
        probe = self.playlist.directory / ".write-check"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise PermanentOutputError(
                f"cannot write HLS output: {exc.strerror or exc} ({self.playlist.directory.name})"
            ) from exc

    async def _run_ffmpeg(self, ctx: RunContext, run_tag: str) -> FeedEnd:
        """One ffmpeg run, until the publish ends, a break or the stop."""
        assert self._sub is not None
        sub = self._sub
        argv = self.renditions.argv(self._ffmpeg, run_tag)
        process = FFmpegProcess(argv, name=f"{self._hub.stream_id}/hls")
        self.keep_up = KeepUpWatch(self._clock()) if self.renditions.rungs else None
        if self.keep_up is not None:
            process.add_progress_listener(functools.partial(self._judge_speed, self.keep_up))
        poller = asyncio.create_task(self._poll(ctx, run_tag))
        try:
            return await run_process(ctx, process, lambda p: feed_subscription(sub, p))
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await self.renditions.refresh(run_tag, timeout=PLAYLIST_IO_TIMEOUT, last=True)

    def _judge_speed(self, watch: KeepUpWatch, block: Mapping[str, str]) -> None:
        """One progress block of a ladder's run: drop the top rung when it fell behind."""
        if not watch.observe(parse_speed(block.get("speed")), self._clock()):
            return
        dropped = self.renditions.drop_top()
        log.warning(
            "stream %s: the transcoding runs at %.2fx, below real time; dropping rendition %s "
            "and starting ffmpeg again without it",
            self._hub.stream_id,
            watch.speed or 0.0,
            dropped,
        )
        if self._sub is not None:
            self._sub.request_break()

    async def _poll(self, ctx: RunContext, run_tag: str) -> None:
        """Publish new segments as ffmpeg lists them (each one is progress)."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        schedule = PollSchedule(self._settings.hls_segment_seconds, self._clock())

        def keyframe_passed() -> None:
            if schedule.keyframe(self._clock()) and not wake.is_set():
                loop.call_later(AFTER_KEYFRAME_POLL_SECONDS, wake.set)

        idle_watch = asyncio.create_task(idle_input_is_progress(ctx, self._hub))
        self._hub.add_keyframe_listener(keyframe_passed)
        interval = FIRST_SEGMENT_POLL_SECONDS
        try:
            while True:
                timer = loop.call_later(interval, wake.set)
                await wake.wait()
                wake.clear()
                timer.cancel()
                found = await self.renditions.refresh(run_tag) > 0
                interval = schedule.looked(self._clock(), found=found)
                if found:
                    ctx.progress()
        finally:
            self._hub.remove_keyframe_listener(keyframe_passed)
            idle_watch.cancel()
