"""Spreading the answers of requests woken together over several turns of the event loop.

Every low-latency viewer of a stream waits for the same next part (a blocking playlist reload
or the hinted part), so one new part wakes all of them in the same turn of the event loop, and
that turn lasts as long as answering all of them: with 200 viewers, tens of milliseconds in
which no other request (``/healthz``, the API, other streams) is even read. A
:class:`WakePacer` lets at most ``batch`` woken requests go on per turn; between two batches
the loop polls its sockets. The work is the same; no other request waits for more than one
batch.
"""

from __future__ import annotations

import asyncio
from collections import deque

WAKE_BATCH = 16
"""Woken requests answered per turn of the event loop."""


class WakePacer:
    """Hands out turns to woken requests, at most ``batch`` per turn of the event loop."""

    def __init__(self, batch: int = WAKE_BATCH) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self._batch = batch
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._releasing = False

    async def turn(self) -> None:
        """Return once this request's batch may go on (at the earliest in the next turn)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiting.append(future)
        if not self._releasing:
            self._releasing = True
            loop.call_soon(self._release, loop)
        await future

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        released = 0
        while self._waiting and released < self._batch:
            future = self._waiting.popleft()
            if not future.done():  # not cancelled meanwhile
                future.set_result(None)
                released += 1
        if self._waiting:
            loop.call_soon(self._release, loop)
        else:
            self._releasing = False
