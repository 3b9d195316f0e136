"""How late the event loop runs what is due: a timer every ``LIVERELAY_LOOP_LAG_PROBE_SECONDS``
notes how long after its due time it ran, into ``liverelay_event_loop_lag_seconds``.

Everything liverelay does shares one event loop (RTMP reads, the feed to ffmpeg, every HTTP
request), so this lag is what any of it waits beyond its own work: a turn of the loop that runs
for 50 ms (a burst of answers, a slow synchronous call) delays every timer and every read due in
it by up to 50 ms. A timer is the cheapest probe (no task, one callback per probe) and measures
exactly what timers see. Its cost is a wake-up of the loop, one callback and one histogram
update per probe. On an idle node a wake-up is what costs (about 0.2 ms of CPU on a 2-vCPU
VM: 0.025 % of a core at the default 1 s, 0.4 % at 50 ms); a benchmark that wants many samples
in a short window probes more often.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from aiohttp import web

from api.keys import METRICS, SETTINGS


class _Timer(Protocol):
    def cancel(self) -> None: ...


class _Loop(Protocol):
    """What the probe needs of an event loop (:class:`asyncio.AbstractEventLoop` has it)."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object]) -> _Timer: ...


class LoopLagProbe:
    """Schedules a timer every ``interval`` seconds on ``loop`` and passes how late it ran (in
    seconds, never negative) to ``observe``."""

    def __init__(self, loop: _Loop, observe: Callable[[float], None], interval: float) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._loop = loop
        self._observe = observe
        self._interval = interval
        self._due = 0.0
        self._timer: _Timer | None = None

    def start(self) -> None:
        """Start probing (again)."""
        self.stop()
        self._schedule(self._loop.time())

    def stop(self) -> None:
        """Stop probing."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self, now: float) -> None:
        self._due = now + self._interval
        self._timer = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        # asyncio runs a timer up to its clock's resolution early: that is no lag
        self._observe(max(0.0, now - self._due))
        self._schedule(now)


async def loop_lag_context(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: probe the running loop's lag into the app's metrics while it serves
    (unless the probe is off)."""
    interval = app[SETTINGS].loop_lag_probe_seconds
    if interval == 0:
        yield
        return
    probe = LoopLagProbe(asyncio.get_running_loop(), app[METRICS].loop_lag.observe, interval)
    probe.start()
    try:
        yield
    finally:
        probe.stop()
