"""Restream: one supervised ffmpeg per target, relaying the publish with ``-c copy`` as FLV.

Each target has its own hub subscription (bounded: a target that cannot keep up drops until the
next keyframe, never slowing the publisher or the other outputs) and its own
:class:`~workers.supervisor.Supervisor` (retries with capped backoff; a stalled target is
restarted). A restarted attempt begins again from the hub's cached headers and waits for a
keyframe, so the target always receives a decodable stream. The target URL holds a secret stream
key: every log line, stderr line and ``last_error`` goes through a redactor first, which hides
the key by value (and the URL's password and query), whatever the shape of the URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from config.settings import Settings
from ingest.authorizer import RestreamTarget
from ingest.hub import StreamHub, Subscription
from workers.argv import make_redactor, restream_argv, url_secrets
from workers.hls import feed_subscription, idle_input_is_progress
from workers.process import FFmpegProcess
from workers.supervisor import OutputState, OutputStatus, RunContext, Supervisor, run_process

log = logging.getLogger(__name__)

RESTREAM_BACKOFF_INITIAL = 1.0
"""Seconds before the first retry of a failed target (doubling up to the configured cap)."""


class RestreamOutput:
    """Relays one stream to one target while the publisher is live."""

    def __init__(
        self,
        settings: Settings,
        *,
        ffmpeg: str,
        hub: StreamHub,
        target: RestreamTarget,
        on_change: Callable[[OutputStatus], None] | None = None,
    ) -> None:
        """``on_change`` is told every state change of the output (redacted status)."""
        self.target = target
        self._settings = settings
        self._ffmpeg = ffmpeg
        self._hub = hub
        self._sub: Subscription | None = None
        self._redact = make_redactor([target.stream_key, *url_secrets(target.publish_url)])
        self.name = f"{hub.stream_id}/restream:{target.target_id}"
        """Name in logs and statuses (never the URL: it holds the key)."""
        self.input_ended = asyncio.Event()
        """Set once the publish ended and ffmpeg sent everything it was given."""
        self.supervisor = Supervisor(
            self.name,
            self._run,
            backoff_initial=RESTREAM_BACKOFF_INITIAL,
            backoff_max=settings.output_backoff_max_seconds,
            stall_seconds=settings.output_stall_seconds,
            redact=self._redact,
            on_change=on_change,
        )

    @property
    def subscription(self) -> Subscription | None:
        """This output's hub subscription (for its queue size and drop count)."""
        return self._sub

    def status(self) -> OutputStatus:
        """The supervisor's status (redacted)."""
        return self.supervisor.status()

    def start(self) -> None:
        """Subscribe to the hub and start the supervised ffmpeg."""
        self._sub = self._hub.subscribe(f"restream:{self.target.target_id}")
        self.supervisor.start()

    async def stop(self, *, drain_timeout: float = 0.0) -> None:
        """Stop for good and unsubscribe. After the publish ended, pass ``drain_timeout``: ffmpeg
        then gets that long to send what the hub already delivered, if it is live (a target
        removed while live, or one that is failing, is stopped at once)."""
        if drain_timeout > 0 and self.supervisor.state is OutputState.LIVE:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_timeout):
                    await self.input_ended.wait()
        await self.supervisor.stop()
        if self._sub is not None:
            self._hub.unsubscribe(self._sub)

    def _argv(self) -> list[str]:
        rtmps = urlsplit(self.target.publish_url).scheme.lower() == "rtmps"
        return restream_argv(
            self._ffmpeg,
            publish_url=self.target.publish_url,
            rw_timeout_seconds=self._settings.output_stall_seconds,
            ca_file=self._settings.restream_ca_file if rtmps else None,
        )

    async def _run(self, ctx: RunContext) -> None:
        sub = self._sub
        assert sub is not None
        if ctx.attempt > 1:
            self._hub.restart(sub)  # headers first, then wait for a keyframe
        process = FFmpegProcess(self._argv(), name=self.name, redact=self._redact)
        idle_watch = asyncio.create_task(idle_input_is_progress(ctx, self._hub))
        try:
            await run_process(ctx, process, lambda p: feed_subscription(sub, p))
        finally:
            idle_watch.cancel()
        if ctx.stopping.is_set():
            return
        # The publish ended and ffmpeg flushed: wait to be stopped (a returning run restarts).
        self.input_ended.set()
        await ctx.stopping.wait()
