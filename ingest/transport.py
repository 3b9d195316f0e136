"""The socket side of one RTMP connection: received bytes go straight to the sans-IO connection
and its session, inside the event loop's read callback.

Media needs no waiting, so it is handed to the hub in :meth:`RTMPTransport.buffer_updated`,
without a task switch, a future or a copy into a stream buffer. An event that must wait (a
publish being authorized, an unpublish winding its outputs down) pauses reading and goes, with
the events after it, to the connection's task (:meth:`RTMPTransport.run`), which resumes
reading once they are handled. Errors found in the callback (a protocol error, a limit, a
refusal) stop reading and are raised in that task, so the server handles every way a
connection ends in one place; a protocol error only after the events the peer completed
before it (``RTMPProtocolError.events``). After a ``publish`` the sans-IO connection parses
nothing until the publish is decided; the task then parses what waited.

While publishing, reads are batched with the socket's receive low-water mark
(``SO_RCVLOWAT``): it is set to what the publisher sends in about ``read_interval`` seconds, so
the kernel wakes the event loop once per batch of messages instead of once per message, with
no timer or pause per read. Nothing caps the bitrate: a socket holding more than the mark is
readable at once. A :class:`ReadBatcher` shared by all connections releases the data of a
publisher that slowed down or stopped short of its mark (a pause, its last bytes, the
unpublish), so batching delays data by about ``read_interval``, at most about four times
that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable

from ingest.batching import ReadBatcher
from ingest.limits import CloseReason, ConnectionLimitHit
from ingest.publisher import PublisherConnection
from ingest.rtmp.connection import RTMPServerConnection
from ingest.rtmp.errors import RTMPProtocolError
from ingest.rtmp.events import Event
from ingest.stats import BitrateMeter

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
"""Bytes read and parsed at a time. A peer can make an event of every byte (empty media
messages), so this bounds the events of one read, held while a publish is being authorized, to
about 7 MB; the bytes after the publish wait unparsed."""
BITRATE_WINDOW_SECONDS = 5
"""Window over which ``LIVERELAY_RTMP_MAX_PUBLISH_KBPS`` is averaged."""
MAX_LOW_WATER = READ_SIZE // 2
"""Highest receive low-water mark: a faster publisher gets shorter batches."""
RATE_WINDOW_SECONDS = 1.0
"""How often the low-water mark follows the publisher's bitrate."""


class RTMPTransport(asyncio.BufferedProtocol):
    """One accepted RTMP connection (see the module docstring).

    ``on_made`` is called from :meth:`connection_made`; it either refuses the connection
    (closes the transport) or calls :meth:`attach` and starts the task that runs :meth:`run`.
    """

    def __init__(
        self,
        on_made: Callable[[RTMPTransport], None],
        *,
        batcher: ReadBatcher | None,
        idle_timeout: float,
        max_send_buffer: int,
        max_publish_kbps: int,
        clock: Callable[[], float],
    ) -> None:
        self._on_made = on_made
        self._batcher = batcher
        self._idle_timeout = idle_timeout
        self._max_send_buffer = max_send_buffer
        self._max_kbps = max_publish_kbps
        self._meter = BitrateMeter(BITRATE_WINDOW_SECONDS) if max_publish_kbps else None
        self._clock = clock
        self._view = memoryview(bytearray(READ_SIZE))
        self.transport: asyncio.Transport | None = None
        self.conn: RTMPServerConnection | None = None
        self.session: PublisherConnection | None = None
        self._loop = asyncio.get_running_loop()
        self._pending: deque[Event] = deque()
        """Events waiting for the task, in order; reading is paused while there are any."""
        self._failure: BaseException | None = None
        self._eof = False
        self._lost = False
        self._closed_by_server = False
        self._batching = False
        self._low_water = 1
        """The socket's SO_RCVLOWAT now."""
        self._target_low_water = 1
        """What the publisher's bitrate calls for."""
        self._window_bytes = 0
        self._window_start = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._last_data_at = 0.0
        self._wakeup = asyncio.Event()
        self._gone = self._loop.create_future()
        """Resolved by :meth:`connection_lost`."""

    # -- set-up -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._on_made(self)

    def attach(self, conn: RTMPServerConnection, session: PublisherConnection) -> None:
        """Serve this connection with ``conn`` and ``session`` (before any byte is read)."""
        self.conn, self.session = conn, session

    def extra(self, name: str) -> object:
        """``transport.get_extra_info(name)``."""
        assert self.transport is not None
        return self.transport.get_extra_info(name)

    # -- the event loop's callbacks -----------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        conn, session = self.conn, self.session
        if conn is None or session is None or self._failure is not None:
            return  # refused, or already ending: the rest is not read
        self._last_data_at = now = self._loop.time()
        try:
            if self._meter is not None:
                self._check_bitrate(nbytes)
            self._receive(conn, session, self._view[:nbytes])
        except Exception as exc:  # raised again in the connection's task
            self._fail(exc)
            return
        if self._batching:
            self._follow_bitrate(now, nbytes)

    def _receive(
        self, conn: RTMPServerConnection, session: PublisherConnection, data: memoryview | bytes
    ) -> None:
        """Parse ``data`` and hand its events on, those before a protocol error included."""
        error: RTMPProtocolError | None = None
        try:
            events = conn.receive_data(data)
        except RTMPProtocolError as exc:
            events, error = list(exc.events), exc
        if self._pending:
            self._pending.extend(events)
        else:
            self._dispatch(session, events)
        self._send()  # the replies to those events go out before a protocol error closes
        if error is not None:
            raise error

    def _dispatch(self, session: PublisherConnection, events: list[Event]) -> None:
        handle_now = session.handle_now
        for index, event in enumerate(events):
            if not handle_now(event):
                self._pending.extend(events[index:])
                self._update_reading()
                self._wakeup.set()
                return

    def eof_received(self) -> bool:
        self._eof = True
        self._wakeup.set()
        return True  # half-open: the task closes, after flushing any last replies

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if exc is not None and self._failure is None:
            self._failure = exc
        self._cancel_timers()
        if not self._gone.done():
            self._gone.set_result(None)
        self._wakeup.set()

    # -- the connection's task ----------------------------------------------------------------

    async def run(
        self, handle: Callable[[Event], Awaitable[None]], *, handshake_timeout: float
    ) -> tuple[bool, str]:
        """Handle the events that need waiting until the connection ends; returns (clean,
        reason) for how the publish ended. Raises what ended it otherwise: a protocol error,
        :class:`ConnectionLimitHit`, the session's refusal, a lost connection."""
        session = self.session
        assert session is not None
        deadline = self._loop.time() + handshake_timeout
        while True:
            if not (self._pending or self._failure or self._eof or self._lost):
                try:
                    await self._wait(None if session.publishing else deadline)
                except TimeoutError:
                    raise ConnectionLimitHit(
                        CloseReason.HANDSHAKE_TIMEOUT,
                        f"not publishing {handshake_timeout:g} s after connecting",
                    ) from None
            if (failure := self._final_failure()) is not None:
                raise failure
            while self._pending:
                await handle(self._pending.popleft())
                self._send()
                if (failure := self._final_failure()) is not None:
                    raise failure
                if not self._pending:
                    self._parse_waiting()
            if self._failure is not None:
                raise self._failure
            if session.publishing and self._idle_timer is None and not self._lost:
                self._idle_timer = self._loop.call_later(self._idle_timeout, self._check_idle)
            self._batch(session.publishing and not self._lost)
            self._update_reading()
            if self._closed_by_server:
                return True, "disconnected by server"
            if self._eof or self._lost:
                return False, "connection closed by publisher"
            if session.ended:  # unpublished: close rather than wait for a handshake deadline
                return True, "publish ended"

    def _final_failure(self) -> BaseException | None:
        """What ended the connection, unless a protocol error waits for the events before it."""
        return None if isinstance(self._failure, RTMPProtocolError) else self._failure

    def _parse_waiting(self) -> None:
        """Parse what the connection kept unparsed while a publish was being decided."""
        conn, session = self.conn, self.session
        if conn is None or session is None or self._failure is not None:
            return
        try:
            self._receive(conn, session, b"")
        except Exception as exc:
            self._fail(exc)

    async def _wait(self, deadline: float | None) -> None:
        self._wakeup.clear()
        if deadline is None:
            await self._wakeup.wait()
            return
        async with asyncio.timeout_at(deadline):
            await self._wakeup.wait()

    def flush(self) -> None:
        """Send the replies the connection has queued (e.g. a refusal)."""
        conn, transport = self.conn, self.transport
        if conn is None or transport is None:
            return
        out = conn.data_to_send()
        if out and not transport.is_closing():
            transport.write(out)

    def close_from_outside(self) -> None:
        """End the connection from outside its task (API delete, replaced publisher), sending
        the session's last status first."""
        self.flush()
        self._closed_by_server = True
        assert self.transport is not None
        self.transport.close()
        self._wakeup.set()

    async def close(self, grace: float) -> None:
        """Close, letting the last replies go out for up to ``grace`` seconds, then abort."""
        self._cancel_timers()
        assert self.transport is not None
        self.transport.close()
        try:
            async with asyncio.timeout(grace):
                await asyncio.shield(self._gone)
        except TimeoutError:
            self.abort()  # a peer that never reads would otherwise pin the connection
        except asyncio.CancelledError:  # server shutdown
            self.abort()
            raise

    def abort(self) -> None:
        """Drop the connection with a reset. A linger time of 0 makes the kernel discard the
        unsent bytes too, instead of keeping up to a send buffer of them for a peer that does
        not read."""
        assert self.transport is not None
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    # -- internals ----------------------------------------------------------------------------

    def _send(self) -> None:
        """Write the queued replies; a peer that leaves too many unread is dropped."""
        self.flush()
        assert self.transport is not None
        unsent = self.transport.get_write_buffer_size()
        if unsent > self._max_send_buffer:
            raise ConnectionLimitHit(
                CloseReason.SLOW_READER, f"client does not read: {unsent} bytes unsent"
            )

    def _check_bitrate(self, size: int) -> None:
        assert self._meter is not None
        now = self._clock()
        self._meter.add(now, size)
        kbps, most = self._meter.kbps(now), self._max_kbps
        if kbps > most:
            raise ConnectionLimitHit(
                CloseReason.BITRATE_LIMIT,
                f"{kbps:.0f} kbit/s over {BITRATE_WINDOW_SECONDS} s exceeds {most} kbit/s",
            )

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self._update_reading()
        self._wakeup.set()

    # -- batched reads -------------------------------------------------------------------------

    def _batch(self, on: bool) -> None:
        """Start or stop batching reads (publishing began or ended)."""
        if self._batcher is None or on == self._batching:
            return
        self._batching = on
        if on:
            self._window_bytes, self._window_start = 0, self._loop.time()
            self._batcher.add(self)
        else:
            self._batcher.discard(self)
            self._target_low_water = 1
            self._set_low_water(1)

    def _follow_bitrate(self, now: float, nbytes: int) -> None:
        """Once a second, set the low-water mark to what arrives in one read interval; after a
        release, restore it."""
        assert self._batcher is not None
        self._window_bytes += nbytes
        elapsed = now - self._window_start
        if elapsed >= RATE_WINDOW_SECONDS:
            rate = self._window_bytes / elapsed
            self._window_bytes, self._window_start = 0, now
            target = max(1, min(MAX_LOW_WATER, int(rate * self._batcher.interval)))
            if abs(target - self._target_low_water) * 4 > self._target_low_water:
                self._target_low_water = target
        if self._low_water != self._target_low_water:
            self._set_low_water(self._target_low_water)

    def release_if_waiting_since(self, since: float) -> None:
        """Called by the batcher: if nothing was read since ``since`` while the mark is above
        one byte, drop it to one so whatever waits is read now."""
        if self._low_water > 1 and self._last_data_at < since:
            self._set_low_water(1)

    def _set_low_water(self, size: int) -> None:
        transport = self.transport
        sock = None if transport is None else transport.get_extra_info("socket")
        if sock is None or transport is None or transport.is_closing():
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)
        except OSError as exc:  # then reads are simply not batched
            log.debug("cannot set SO_RCVLOWAT: %s", exc)
            self._target_low_water = size = 1
        self._low_water = size

    def _check_idle(self) -> None:
        """The idle timeout of a publishing connection: one timer, re-armed for when the
        timeout would be reached, instead of a timeout per read."""
        now = self._loop.time()
        if self._pending or now - self._last_data_at < self._idle_timeout - 0.001:
            start = now if self._pending else self._last_data_at
            self._idle_timer = self._loop.call_at(start + self._idle_timeout, self._check_idle)
            return
        self._idle_timer = None
        self._fail(
            ConnectionLimitHit(CloseReason.IDLE_TIMEOUT, f"no data for {self._idle_timeout:g} s")
        )

    def _update_reading(self) -> None:
        """Read unless events wait for the task or the connection is ending."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        want = not (self._pending or self._failure is not None)
        if want != transport.is_reading():
            if want:
                transport.resume_reading()
            else:
                transport.pause_reading()

    def _cancel_timers(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._batcher is not None:
            self._batcher.discard(self)
        self._batching = False
