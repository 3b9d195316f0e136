"""The timer that releases batched reads of publishing RTMP connections (see
:mod:`ingest.transport`)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest.transport import RTMPTransport

__all__ = ["ReadBatcher"]


class ReadBatcher:
    """Releases the batched reads of publishing connections that have been waiting for their
    low-water mark for two intervals: one timer for all of them, every two intervals, running
    only while some connection batches."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._members: set[RTMPTransport] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, transport: RTMPTransport) -> None:
        self._members.add(transport)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(2 * self.interval, self._tick)

    def discard(self, transport: RTMPTransport) -> None:
        self._members.discard(transport)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        stalled_since = loop.time() - 2 * self.interval
        for transport in self._members:
            transport.release_if_waiting_since(stalled_since)
        self._timer = loop.call_later(2 * self.interval, self._tick) if self._members else None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._members.clear()
