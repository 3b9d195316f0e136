"""Restream: one supervised ffmpeg per target, relaying the publish with ``-c copy`` as FLV.

Each target has its own hub subscription (bounded: a target that cannot keep up drops until the
next keyframe, never slowing the publisher or the other outputs) and its own
:class:`~workers.supervisor.Supervisor` (retries with capped backoff; a stalled target is
restarted). A restarted attempt begins again from the hub's cached headers and waits for a
keyframe, so the target always receives a decodable stream. The target URL holds a secret stream
key: every log line, stderr line and ``last_error`` goes through a redactor first, which hides
the key by value (and the URL's password and query), whatever the shape of the URL.

Right before every start the target host is resolved and checked (:mod:`workers.restream_target`):
ffmpeg is never left to resolve an unchecked name. Unless private targets are allowed, the
``last_error`` tenants see says only "could not connect to the target" for any connection-level
failure (refused, timed out, unreachable, reset, stalled before or while sending), so that it
cannot tell a closed port from a filtered one; the log keeps ffmpeg's own words.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from collections.abc import Callable

from config.settings import Settings
from ingest.authorizer import RestreamTarget
from ingest.hub import StreamHub, Subscription
from workers.argv import make_redactor, restream_argv, url_secrets
from workers.egress import Resolve, resolve_addresses
from workers.feed import FeedEnd, feed_subscription, idle_input_is_progress, run_process
from workers.process import FFmpegProcess
from workers.restream_target import ConnectPlan, plan_connection
from workers.supervisor import OutputState, OutputStatus, RunContext, RunEnd, Supervisor

log = logging.getLogger(__name__)

RESTREAM_BACKOFF_INITIAL = 1.0
"""Seconds before the first retry of a failed target (doubling up to the configured cap)."""
CONNECT_FAILED = "could not connect to the target"
"""``last_error`` of a connection-level failure when private targets are not allowed."""
_CONNECTION_FAILURE = re.compile(
    r"refused|timed out|timeout|unreachable|no route|reset by peer|broken pipe|end of file|"
    r"connection|handshake|no progress for|network is down|host is down|i/o error|"
    r"input/output error",
    re.IGNORECASE,
)


def coarse_error(last_error: str | None) -> str | None:
    """``last_error`` as tenants see it when private targets are not allowed: connection-level
    failures all read :data:`CONNECT_FAILED`; liverelay's own refusals ("target host ...") and
    other errors are kept."""
    if last_error is None or last_error.startswith("target host"):
        return last_error
    return CONNECT_FAILED if _CONNECTION_FAILURE.search(last_error) else last_error


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
        resolve: Resolve = resolve_addresses,
    ) -> None:
        """``on_change`` is told every state change of the output (redacted status, with the
        error as :meth:`status` shows it); ``resolve`` looks target host names up before every
        start (the system resolver by default)."""
        self.target = target
        self._settings = settings
        self._ffmpeg = ffmpeg
        self._hub = hub
        self._resolve = resolve
        self._on_change = on_change
        self._sub: Subscription | None = None
        self._redact = make_redactor([target.stream_key, *url_secrets(target.publish_url)])
        self.name = f"{hub.stream_id}/restream:{target.target_id}"
        """Name in logs and statuses (never the URL: it holds the key)."""
        self.supervisor = Supervisor(
            self.name,
            self._run,
            backoff_initial=RESTREAM_BACKOFF_INITIAL,
            backoff_max=settings.output_backoff_max_seconds,
            stall_seconds=settings.output_stall_seconds,
            redact=self._redact,
            on_change=self._changed if on_change is not None else None,
            clock=hub.clock,
        )

    @property
    def subscription(self) -> Subscription | None:
        """This output's hub subscription (for its queue size and drop count)."""
        return self._sub

    def status(self) -> OutputStatus:
        """The supervisor's status (redacted; connection errors coarse, see the module)."""
        return self._shown(self.supervisor.status())

    def _shown(self, status: OutputStatus) -> OutputStatus:
        if self._settings.allow_private_targets:
            return status
        return dataclasses.replace(status, last_error=coarse_error(status.last_error))

    def _changed(self, status: OutputStatus) -> None:
        assert self._on_change is not None
        self._on_change(self._shown(status))

    def start(self) -> None:
        """Subscribe to the hub and start the supervised ffmpeg."""
        self._sub = self._hub.subscribe(f"restream:{self.target.target_id}")
        self.supervisor.start()

    async def stop(self, *, drain_timeout: float = 0.0) -> None:
        """Stop for good and unsubscribe. After the publish ended, pass ``drain_timeout``: ffmpeg
        then gets that long to send what the hub already delivered, if it is live (the
        output is ``finished`` then, unless it failed; a target removed while live, or one
        that is failing, is stopped at once)."""
        if drain_timeout > 0 and self.supervisor.state is OutputState.LIVE:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_timeout):
                    await self.supervisor.wait_done()
        await self.supervisor.stop()
        if self._sub is not None:
            self._hub.unsubscribe(self._sub)

    async def plan(self, attempt: int = 1) -> ConnectPlan:
        """Where attempt ``attempt`` connects: the target host resolved and checked now."""
        return await plan_connection(
            self.target.publish_url,
            resolve=self._resolve,
            allow_private=self._settings.allow_private_targets,
            attempt=attempt,
        )

    def _argv(self, plan: ConnectPlan) -> list[str]:
        rtmps = plan.url.startswith("rtmps:")
        return restream_argv(
            self._ffmpeg,
            publish_url=plan.url,
            rw_timeout_seconds=self._settings.output_stall_seconds,
            ca_file=self._settings.restream_ca_file if rtmps else None,
            tc_url=plan.tc_url,
        )

    async def _run(self, ctx: RunContext) -> RunEnd | None:
        sub = self._sub
        assert sub is not None
        if ctx.attempt > 1:
            self._hub.restart(sub)  # headers first, then wait for a keyframe
        plan = await self.plan(ctx.attempt)
        process = FFmpegProcess(self._argv(plan), name=self.name, redact=self._redact)
        idle_watch = asyncio.create_task(idle_input_is_progress(ctx, self._hub))
        try:
            end = await run_process(ctx, process, lambda p: feed_subscription(sub, p))
        finally:
            idle_watch.cancel()
        # INPUT_ENDED: ffmpeg sent all it was given and the output is finished. Nothing
        # requests a break of a restream subscription; one would begin a new attempt.
        return RunEnd.INPUT_ENDED if end is FeedEnd.INPUT_ENDED else None
