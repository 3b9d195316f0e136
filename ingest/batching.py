"""Batched reads of publishing RTMP connections.

While a connection publishes, its socket's receive low-water mark (``SO_RCVLOWAT``) is set to
what the publisher sends in about ``interval`` seconds (:class:`LowWaterMark`), so the kernel
wakes the event loop once per batch of messages instead of once per message, with no timer or
pause per read. Nothing caps the bitrate: a socket holding more than the mark is readable at
once. One :class:`ReadBatcher`, shared by all connections, releases the data of a publisher that
slowed down or stopped short of its mark (a pause, its last bytes, the unpublish), so batching
delays data by about ``interval``, at most about four times that.
"""

from __future__ import annotations

import asyncio
import logging
import socket

__all__ = ["MAX_LOW_WATER", "RATE_WINDOW_SECONDS", "LowWaterMark", "ReadBatcher"]

log = logging.getLogger(__name__)

MAX_LOW_WATER = 32 * 1024
"""Highest receive low-water mark, half of one read (:data:`ingest.transport.READ_SIZE`): a
faster publisher gets shorter batches."""
RATE_WINDOW_SECONDS = 1.0
"""How often the low-water mark follows the publisher's bitrate."""


class LowWaterMark:
    """The receive low-water mark of one publishing connection's socket, following its bitrate.

    The transport calls :meth:`follow` after every read; the batcher calls
    :meth:`release_if_waiting_since`. :meth:`stop` puts the mark back to one byte.
    """

    def __init__(self, transport: asyncio.Transport, interval: float, now: float) -> None:
        self._transport = transport
        self._interval = interval
        self._mark = 1
        """The socket's SO_RCVLOWAT now."""
        self._target = 1
        """What the publisher's bitrate calls for."""
        self._window_bytes = 0
        self._window_start = now
        self._last_read_at = now

    def follow(self, now: float, nbytes: int) -> None:
        """``nbytes`` were read at ``now``. Once a second, aim the mark at what arrives in one
        read interval; after a release, restore it."""
        self._last_read_at = now
        self._window_bytes += nbytes
        elapsed = now - self._window_start
        if elapsed >= RATE_WINDOW_SECONDS:
            rate = self._window_bytes / elapsed
            self._window_bytes, self._window_start = 0, now
            target = max(1, min(MAX_LOW_WATER, int(rate * self._interval)))
            if abs(target - self._target) * 4 > self._target:
                self._target = target
        if self._mark != self._target:
            self._set(self._target)

    def release_if_waiting_since(self, since: float) -> None:
        """If nothing was read since ``since`` while the mark is above one byte, drop it to
        one so whatever waits is read now."""
        if self._mark > 1 and self._last_read_at < since:
            self._set(1)

    def stop(self) -> None:
        """Publishing ended: read every byte as it comes again."""
        self._target = 1
        self._set(1)

    def _set(self, size: int) -> None:
        transport = self._transport
        sock = transport.get_extra_info("socket")
        if sock is None or transport.is_closing():
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)
        except OSError as exc:  # then reads are simply not batched
            log.debug("cannot set SO_RCVLOWAT: %s", exc)
            self._target = size = 1
        self._mark = size


class ReadBatcher:
    """Releases the batched reads of publishing connections that have been waiting for their
    low-water mark for two intervals: one timer for all of them, every two intervals, running
    only while some connection batches."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._members: set[LowWaterMark] = set()
        self._timer: asyncio.TimerHandle | None = None

    def start(self, transport: asyncio.Transport) -> LowWaterMark:
        """Batch the reads of ``transport`` (it began publishing) until :meth:`stop`."""
        loop = asyncio.get_running_loop()
        mark = LowWaterMark(transport, self.interval, loop.time())
        self._members.add(mark)
        if self._timer is None:
            self._timer = loop.call_later(2 * self.interval, self._tick)
        return mark

    def stop(self, mark: LowWaterMark, *, reset: bool) -> None:
        """Stop batching ``mark``'s reads; ``reset`` puts its socket's mark back to one byte
        (not needed when the connection is gone)."""
        self._members.discard(mark)
        if reset:
            mark.stop()

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        stalled_since = loop.time() - 2 * self.interval
        for mark in self._members:
            mark.release_if_waiting_since(stalled_since)
        self._timer = loop.call_later(2 * self.interval, self._tick) if self._members else None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._members.clear()
