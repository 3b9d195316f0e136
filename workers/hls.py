"""The HLS output: one supervised ffmpeg per live stream, FLV on stdin, MPEG-TS segments out.

ffmpeg only cuts segments; :class:`~workers.playlist.LivePlaylist` turns them into the public
playlist. Each ffmpeg run writes segments named ``<session>-<attempt>-<n>.ts``, so a restarted
ffmpeg never reuses a name a cache may hold, and the playlist marks the restart with
``EXT-X-DISCONTINUITY``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from config.settings import Settings
from ingest.hub import StreamHub, Subscription
from workers.argv import hls_argv
from workers.playlist import LivePlaylist
from workers.process import FFmpegProcess
from workers.supervisor import RunContext, Supervisor, run_process

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2


async def feed_subscription(sub: Subscription, process: FFmpegProcess) -> None:
    """Write everything ``sub`` delivers into ``process`` until the publish ends."""
    while (batch := await sub.read()) is not None:
        await process.write(b"".join(batch) if len(batch) > 1 else batch[0])


class HLSOutput:
    """Keeps a stream's live playlist fed for one live session."""

    name = "hls"

    def __init__(
        self,
        settings: Settings,
        *,
        ffmpeg: str,
        hub: StreamHub,
        playlist: LivePlaylist,
        session_tag: str,
    ) -> None:
        self._settings = settings
        self._ffmpeg = ffmpeg
        self._hub = hub
        self.playlist = playlist
        self._tag = session_tag
        self._sub: Subscription | None = None
        self.input_ended = asyncio.Event()
        """Set once the publish ended and ffmpeg has written its last segment."""
        self.supervisor = Supervisor(
            f"{hub.stream_id}/hls",
            self._run,
            stall_seconds=settings.output_stall_seconds,
            backoff_initial=0.5,
            backoff_max=settings.output_backoff_max_seconds,
        )

    @property
    def dropped_frames(self) -> int:
        """Frames this output dropped because it lagged."""
        return self._sub.dropped_frames if self._sub else 0

    def start(self) -> None:
        """Subscribe to the hub and start the supervised ffmpeg."""
        self._sub = self._hub.subscribe(self.name)
        self.supervisor.start()

    async def stop(self, *, timeout: float) -> None:
        """Let ffmpeg finish what the hub already delivered (bounded), then stop for good."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.input_ended.wait()
        await self.supervisor.stop()
        self.playlist.end()
        if self._sub is not None:
            self._hub.unsubscribe(self._sub)

    async def _run(self, ctx: RunContext) -> None:
        assert self._sub is not None
        if ctx.attempt > 1:
            self._hub.restart(self._sub)
            self.playlist.mark_discontinuity()
        run_tag = f"{self._tag}-{ctx.attempt}"
        directory = self.playlist.directory
        private = directory / f".ffmpeg-{run_tag}.m3u8"
        argv = hls_argv(
            self._ffmpeg,
            segment_seconds=self._settings.hls_segment_seconds,
            segment_pattern=str(directory / f"{run_tag}-%d.ts"),
            playlist_path=str(private),
        )
        process = FFmpegProcess(argv, name=f"{self._hub.stream_id}/hls")
        poller = asyncio.create_task(self._poll(ctx, private))
        try:
            await run_process(ctx, process, lambda p: feed_subscription(self._sub, p))  # type: ignore[arg-type]
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            self.playlist.sync(private)
            private.unlink(missing_ok=True)
        # The publish ended and ffmpeg wrote its last segment: wait to be stopped rather than
        # return (a returning run would be restarted).
        self.input_ended.set()
        await ctx.stopping.wait()

    async def _poll(self, ctx: RunContext, private: Path) -> None:
        """Publish new segments as ffmpeg lists them. While the publisher sends nothing, ffmpeg
        cannot progress, so an idle input counts as progress (not a stall)."""
        while True:
            await asyncio.sleep(POLL_SECONDS)
            if self.playlist.sync(private):
                ctx.progress()
            elif time.monotonic() - self._hub.last_media_at > POLL_SECONDS * 5:
                ctx.progress()
