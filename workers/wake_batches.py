"""Waking the readers of a change in batches over several turns of the event loop.

Every low-latency viewer of a stream waits for the same next part (a blocking playlist reload
or the hinted part), so one new part wakes all of them, and if they all went on in the same
turn of the event loop, that turn would last as long as answering all of them: with 200
viewers, tens of milliseconds in which no timer runs and no other request (``/healthz``, the
API, other streams) is even read. :class:`WakeBatches` wakes at most ``batch`` waiters per
turn; between two batches the loop polls its sockets and runs its timers. A woken waiter goes
straight on to its answer, so a turn holds one batch's answers and nothing more.
"""

from __future__ import annotations

import asyncio
from collections import deque

WAKE_BATCH = 16
"""Waiters woken per turn of the event loop."""


class WakeBatches:
    """Waiters for the next change; :meth:`wake` wakes them at most ``batch`` per turn."""

    def __init__(self, batch: int = WAKE_BATCH) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self._batch = batch
        self._waiting: list[asyncio.Future[None]] = []
        self._due: deque[asyncio.Future[None]] = deque()
        self._releasing = False

    def waiter(self) -> asyncio.Future[None]:
        """A future done once a change after this call woke it (cancel it to stop waiting)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        return future

    def wake(self) -> None:
        """A change: wake every current waiter, the first batch in the next turn of the loop,
        the rest a batch per turn after it, in the order they came."""
        if not self._waiting:
            return
        self._due.extend(self._waiting)
        self._waiting = []
        if not self._releasing:
            self._releasing = True
            asyncio.get_running_loop().call_soon(self._release)

    def _release(self) -> None:
        released = 0
        while self._due and released < self._batch:
            future = self._due.popleft()
            if not future.done():  # not cancelled meanwhile (a timeout)
                future.set_result(None)
                released += 1
        if self._due:
            asyncio.get_running_loop().call_soon(self._release)
        else:
            self._releasing = False
