"""The feed loop every ffmpeg output shares: write what a hub subscription delivers into one
supervised ffmpeg until the publish ends, a break is requested or the supervisor stops, then
stop the process with its ladder (EOF first, so ffmpeg finishes its output)."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from typing import Any

from ingest.hub import ReadEnd, StreamHub, Subscription
from workers.process import FFmpegProcess, OutputProcessExited
from workers.supervisor import RunContext

__all__ = ["Feed", "FeedEnd", "feed_subscription", "idle_input_is_progress", "run_process"]


class FeedEnd(enum.Enum):
    """Why a feed (and the process run around it) ended without an error."""

    INPUT_ENDED = "input ended"
    """The publish ended and everything queued was written."""
    BREAK = "break"
    """A break was requested (a publisher reconnect): the next publisher belongs in a new run."""
    STOPPING = "stopping"
    """The supervisor is stopping."""


Feed = Callable[[FFmpegProcess], Awaitable[FeedEnd]]
"""Writes media into the process until the input ends or breaks (then returns) or fails
(raises)."""


async def feed_subscription(sub: Subscription, process: FFmpegProcess) -> FeedEnd:
    """Write everything ``sub`` delivers into ``process`` until the publish ends or a break was
    requested. Each write carries what one batched ingest read delivered, so ffmpeg wakes once
    per read rather than once per message."""
    while not isinstance(batch := await sub.read(), ReadEnd):
        await process.write(b"".join(batch) if len(batch) > 1 else batch[0])
    return FeedEnd.INPUT_ENDED if batch is ReadEnd.ENDED else FeedEnd.BREAK


async def idle_input_is_progress(ctx: RunContext, hub: StreamHub, interval: float = 1.0) -> None:
    """While the publisher sends nothing (paused, or gone inside its reconnect window), an
    output that was working cannot progress: that is not a stall, so report progress. Idleness
    is measured on the hub's clock, the one its ``last_media_at`` is stamped with."""
    while True:
        await asyncio.sleep(interval)
        working = ctx.process is not None and ctx.process.progress_count > 0
        if working and hub.clock() - hub.last_media_at > interval * 2:
            ctx.progress()


async def run_process(
    ctx: RunContext,
    process: FFmpegProcess,
    feed: Feed | None = None,
    *,
    grace: float = 5.0,
    term_grace: float = 3.0,
) -> FeedEnd:
    """The usual body of a ``run``: attach and start ``process``, run ``feed(process)`` (which
    writes media with ``process.write``) until the process exits, the feed ends or
    ``ctx.stopping`` is set, then stop the process with the ladder (EOF first).

    Returns how the feed ended (:attr:`FeedEnd.STOPPING` when stopping); raises
    :class:`OutputProcessExited` when the process ended on its own (even with code 0: a live
    output is not supposed to end), or whatever ``feed`` raised.
    """
    ctx.attach(process)
    await process.start()
    exited = asyncio.ensure_future(process.wait())
    stopping = asyncio.ensure_future(ctx.stopping.wait())
    feeding = asyncio.ensure_future(feed(process)) if feed is not None else None
    tasks: set[asyncio.Future[Any]] = {exited, stopping}
    if feeding is not None:
        tasks.add(feeding)
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await process.stop(grace=grace, term_grace=term_grace)
    if ctx.stopping.is_set():
        return FeedEnd.STOPPING
    if feeding is not None and feeding.done() and not feeding.cancelled():
        error = feeding.exception()
        if error is None:
            end: FeedEnd = feeding.result()  # the process was stopped gracefully
            return end
        if not isinstance(error, OutputProcessExited):
            raise error
    raise process.exit_error()
