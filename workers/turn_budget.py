"""A budget of requests per turn of the event loop, for the playback routes.

A new part makes every low-latency viewer of a stream ask for something within a few
milliseconds: the blocking reloads it answers are woken in batches (:mod:`workers.wake_batches`),
but the requests each viewer then sends arrive together, the selector hands all their sockets
to one turn of the loop and all their handlers run in the next one, during which no timer runs
and no other request is read. :class:`TurnBudget` lets at most ``per_turn`` callers go on per
turn; the others wait, in the order they came, and go on a batch per turn after it.
"""

from __future__ import annotations

import asyncio
from collections import deque

TURN_BUDGET = 16
"""Callers that go on per turn of the event loop (as many as
:data:`workers.wake_batches.WAKE_BATCH` wakes)."""


class TurnBudget:
    """At most ``per_turn`` callers of :meth:`admit` go on per turn of the event loop."""

    def __init__(self, per_turn: int = TURN_BUDGET) -> None:
        if per_turn < 1:
            raise ValueError("per_turn must be at least 1")
        self._per_turn = per_turn
        self._used = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._turn_scheduled = False

    def admit(self) -> asyncio.Future[None] | None:
        """``None``: go on now; otherwise a future to await, done in a later turn (cancel it to
        give up the place). Nobody overtakes a caller already waiting."""
        if not self._waiting and self._used < self._per_turn:
            self._used += 1
            self._schedule_next_turn()
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._schedule_next_turn()
        return future

    def _schedule_next_turn(self) -> None:
        if not self._turn_scheduled:
            self._turn_scheduled = True
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        """A new turn: the budget is full again; the longest waiting take it first (their
        tasks go on in the turn after this one, which the budget then counts as theirs)."""
        self._turn_scheduled = False
        self._used = 0
        while self._waiting and self._used < self._per_turn:
            future = self._waiting.popleft()
            if not future.done():  # not cancelled meanwhile (the client went away)
                future.set_result(None)
                self._used += 1
        if self._used or self._waiting:
            self._schedule_next_turn()
