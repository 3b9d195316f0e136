"""The socket side of one RTMP connection: an asyncio protocol that feeds received bytes to the
sans-IO connection and its publish rules inside the event loop's read callback.

Media needs no waiting, so it is handed to the hub in :meth:`RTMPTransport.buffer_updated`,
without a task switch, a future or a copy into a stream buffer. An event that must wait (a
publish being authorized, an unpublish winding its outputs down) pauses reading and is queued,
with the events after it, for the connection's task in :mod:`ingest.server`, which takes them
with :meth:`RTMPTransport.next_event`; reading resumes once they are handled. Errors found in
the callback (a protocol error, a limit, a refusal) stop reading and are raised in that task
(:meth:`RTMPTransport.raise_failure`), so every way a connection ends is handled in one place;
a protocol error only after the events the peer completed before it
(``RTMPProtocolError.events``). After a ``publish`` the sans-IO connection parses nothing until
the publish is decided; the task then parses what waited.

Behind a trusted proxy the first bytes are a PROXY header, read by a
:class:`~ingest.proxied.ProxyHeaderWait`; reading then pauses until :meth:`RTMPTransport.attach`
parses the bytes after it. On the RTMPS port the bytes read (after any PROXY header) are TLS,
decrypted by the connection's :class:`~ingest.tls_session.TLSSession` into the same buffer
before they are parsed; replies are encrypted on their way out. The limits checked here are in
:mod:`ingest.limits`; the batching of a publisher's reads is in :mod:`ingest.batching`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import deque
from collections.abc import Callable

from ingest.batching import LowWaterMark, ReadBatcher
from ingest.limits import BitrateLimit, ConnectionLimitHit, check_send_buffer, idle_timeout
from ingest.proxied import ProxyHeaderWait, refuse_proxy_header
from ingest.publisher import PublisherConnection
from ingest.rtmp.connection import RTMPServerConnection
from ingest.rtmp.errors import RTMPProtocolError
from ingest.rtmp.events import Event
from ingest.tls_session import TLSSession

READ_SIZE = 64 * 1024
"""Bytes read and parsed at a time. A peer can make an event of every byte (empty media
messages), so this bounds the events of one read, held while a publish is being authorized, to
about 7 MB; the bytes after the publish wait unparsed."""
TLS_READ_SIZE = 256 * 1024
"""Bytes of TLS read at a time (as asyncio's ``ssl=`` transport does: fewer passes of the event
loop per megabyte); decrypted and parsed :data:`READ_SIZE` bytes at a time."""


class RTMPTransport(asyncio.BufferedProtocol):
    """One accepted RTMP connection (see the module docstring).

    ``on_made`` is called from :meth:`connection_made`; it either refuses the connection
    (closes the transport) or calls :meth:`attach` and starts the connection's task. With
    ``tls`` (the RTMPS port) what is read after any PROXY header is TLS.
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
        tls: TLSSession | None = None,
    ) -> None:
        self._on_made = on_made
        self._batcher = batcher
        self._idle_timeout = idle_timeout
        self._max_send_buffer = max_send_buffer
        self._bitrate = BitrateLimit(max_publish_kbps, clock=clock) if max_publish_kbps else None
        self.tls = tls
        self._plaintext = memoryview(bytearray(READ_SIZE))
        self._view = self._plaintext if tls is None else memoryview(bytearray(TLS_READ_SIZE))
        self.transport: asyncio.Transport | None = None
        self.conn: RTMPServerConnection | None = None
        self.publisher: PublisherConnection | None = None
        self._loop = asyncio.get_running_loop()
        self._pending: deque[Event] = deque()
        """Events waiting for the task, in order; reading is paused while there are any."""
        self._failure: BaseException | None = None
        self._eof = False
        self._lost = False
        self._closed_by_server = False
        self._low_water: LowWaterMark | None = None  # set while reads are batched
        self._idle_timer: asyncio.TimerHandle | None = None
        self._last_data_at = 0.0
        self._wakeup = asyncio.Event()
        self._gone = self._loop.create_future()
        """Resolved by :meth:`connection_lost`."""
        self.accepted_at = self._loop.time()
        """Loop time of the accept (the handshake deadline counts from it)."""
        self.header_wait: ProxyHeaderWait | None = None
        """Set before any byte is read when a PROXY header must come first."""
        self.refuse_proxy_header = False
        """Set before any byte is read to close the connection if it begins with a header."""

    # -- set-up -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._on_made(self)

    def attach(self, conn: RTMPServerConnection, publisher: PublisherConnection) -> None:
        """Serve this connection with ``conn`` and ``publisher``: before any byte is read, or
        once its PROXY header is read (the bytes after it are parsed now)."""
        self.conn, self.publisher = conn, publisher
        if self.header_wait is not None and (rest := self.header_wait.take_rest()):
            self._received(conn, publisher, rest)
        self._update_reading()

    # -- the event loop's callbacks -----------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        try:
            if (wait := self.header_wait) is not None and wait.waiting:
                wait.receive(self._view[:nbytes])
                self._update_reading()  # paused once the header is read, until attach
                return
            if self.refuse_proxy_header:
                self.refuse_proxy_header = False
                refuse_proxy_header(self._view[:nbytes])
        except ConnectionLimitHit as exc:
            self._fail(exc)
            return
        conn, publisher = self.conn, self.publisher
        if conn is None or publisher is None or self._failure is not None:
            return  # refused, or already ending: the rest is not read
        self._received(conn, publisher, self._view[:nbytes])
        if (low_water := self._low_water) is not None:
            low_water.follow(self._last_data_at, nbytes)

    def _received(
        self, conn: RTMPServerConnection, publisher: PublisherConnection, data: memoryview | bytes
    ) -> None:
        """Bytes read after any PROXY header: decrypted first on the RTMPS port."""
        self._last_data_at = self._loop.time()
        tls = self.tls
        try:
            for plaintext in (data,) if tls is None else tls.receive(data, self._plaintext):
                if self._bitrate is not None:
                    self._bitrate.check(len(plaintext))
                self._receive(conn, publisher, plaintext)
        except Exception as exc:  # raised again in the connection's task
            self._fail(exc)
        if tls is not None:
            self._write(b"")  # the handshake's replies or an alert
            if tls.closed_by_peer:
                self.eof_received()

    def _receive(
        self, conn: RTMPServerConnection, publisher: PublisherConnection, data: memoryview | bytes
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
            self._dispatch(publisher, events)
        self._send()  # the replies to those events go out before a protocol error closes
        if error is not None:
            raise error

    def _dispatch(self, publisher: PublisherConnection, events: list[Event]) -> None:
        handle_now = publisher.handle_now
        for index, event in enumerate(events):
            if not handle_now(event):
                self._pending.extend(events[index:])
                self._update_reading()
                self._wakeup.set()
                return

    def eof_received(self) -> bool:
        if self.header_wait is not None:
            self.header_wait.end("closed before its PROXY header")
        self._eof = True
        self._tls_cut_short()
        self._wakeup.set()
        # Half-open: the task closes after flushing its last replies; TLS has no half-open state.
        return self.tls is None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.header_wait is not None:
            self.header_wait.end("lost before its PROXY header")
        self._lost = True
        self._tls_cut_short()
        if exc is not None and self._failure is None:
            self._failure = exc
        self._cancel_timers()
        if not self._gone.done():
            self._gone.set_result(None)
        self._wakeup.set()

    # -- what the connection's task asks --------------------------------------------------------

    @property
    def has_news(self) -> bool:
        """Whether something happened that the task has not looked at: events wait, the
        connection failed, or the peer closed."""
        return bool(self._pending) or self._failure is not None or self._eof or self._lost

    @property
    def closed_by_server(self) -> bool:
        """Whether :meth:`close_from_outside` closed the connection."""
        return self._closed_by_server

    @property
    def unfinished(self) -> str:
        """What a connection that is not publishing yet is still in, for the log: ``TLS
        handshake`` or nothing."""
        return "TLS handshake" if self.tls is not None and not self.tls.handshake_done else ""

    @property
    def peer_gone(self) -> bool:
        """Whether the peer closed its side or the connection is lost."""
        return self._eof or self._lost

    async def wait(self, deadline: float | None) -> None:
        """Wait until something happens (at most until the loop time ``deadline``: then
        :class:`TimeoutError`)."""
        self._wakeup.clear()
        if deadline is None:
            await self._wakeup.wait()
            return
        async with asyncio.timeout_at(deadline):
            await self._wakeup.wait()

    def raise_failure(self, *, all_events_handled: bool) -> None:
        """Raise what ended the connection, if anything did. A protocol error is raised only
        once ``all_events_handled``: the events the peer completed before it come first."""
        failure = self._failure
        if failure is None or (isinstance(failure, RTMPProtocolError) and not all_events_handled):
            return
        raise failure

    def next_event(self) -> Event | None:
        """The next event that waits for the task, if any."""
        return self._pending.popleft() if self._pending else None

    def handled(self) -> None:
        """The task handled an event: send its replies; once none waits, parse what the
        connection kept unparsed while a publish was being decided."""
        self._send()
        self.raise_failure(all_events_handled=False)
        if self._pending:
            return
        conn, publisher = self.conn, self.publisher
        if conn is None or publisher is None or self._failure is not None:
            return
        try:
            self._receive(conn, publisher, b"")
        except Exception as exc:
            self._fail(exc)

    def settle(self, *, publishing: bool) -> None:
        """The task handled what waited: watch a publisher for idleness, batch its reads, and
        read again."""
        publishing = publishing and not self._lost
        if publishing and self._idle_timer is None:
            self._idle_timer = self._loop.call_later(self._idle_timeout, self._check_idle)
        self._batch(publishing)
        self._update_reading()

    def flush(self) -> None:
        """Send the replies the connection has queued (e.g. a refusal)."""
        conn, transport = self.conn, self.transport
        if conn is None or transport is None:
            return
        if out := conn.data_to_send():
            self._write(out)

    def close_from_outside(self) -> None:
        """End the connection from outside its task (API delete, replaced publisher), sending
        the publisher's last status first."""
        self.flush()
        self._closed_by_server = True
        self._close_transport()
        self._wakeup.set()

    async def close(self, grace: float) -> None:
        """Close, letting the last replies go out for up to ``grace`` seconds, then abort."""
        self._cancel_timers()
        self._close_transport()
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

    def _close_transport(self) -> None:
        """Close the socket once written out, after ``close_notify`` on a TLS connection."""
        assert self.transport is not None
        if self.tls is not None:
            self.tls.close()
            self._write(b"")
        self.transport.close()

    def _tls_cut_short(self) -> None:
        if self.tls is not None and (failure := self.tls.cut_short()) is not None:
            self._failure = self._failure or failure

    def _write(self, data: bytes) -> None:
        """Write ``data``, encrypted on the RTMPS port with what TLS has to send (handshake
        replies, an alert, ``close_notify``), unless the socket is closing."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.tls is not None:
            self.tls.send(data)
            data = self.tls.data_to_send()
        if data:
            transport.write(data)

    def _send(self) -> None:
        """Write the queued replies; a peer that leaves too many unread is dropped."""
        self.flush()
        assert self.transport is not None
        check_send_buffer(self.transport.get_write_buffer_size(), self._max_send_buffer)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self._update_reading()
        self._wakeup.set()

    def _batch(self, on: bool) -> None:
        """Start or stop batching reads (publishing began or ended)."""
        if self._batcher is None or on == (self._low_water is not None):
            return
        if on:
            assert self.transport is not None
            self._low_water = self._batcher.start(self.transport)
        elif self._low_water is not None:
            self._batcher.stop(self._low_water, reset=True)
            self._low_water = None

    def _check_idle(self) -> None:
        """The idle timeout of a publishing connection: one timer, re-armed for when the
        timeout would be reached, instead of a timeout per read."""
        now = self._loop.time()
        if self._pending or now - self._last_data_at < self._idle_timeout - 0.001:
            start = now if self._pending else self._last_data_at
            self._idle_timer = self._loop.call_at(start + self._idle_timeout, self._check_idle)
            return
        self._idle_timer = None
        self._fail(idle_timeout(self._idle_timeout))

    def _update_reading(self) -> None:
        """Read unless events wait for the task or the connection is ending."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        wait = self.header_wait
        header_read = self.conn is None and wait is not None and not wait.waiting
        want = not (self._pending or self._failure is not None or header_read)
        if want != transport.is_reading():
            if want:
                transport.resume_reading()
            else:
                transport.pause_reading()

    def _cancel_timers(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._batcher is not None and self._low_water is not None:
            self._batcher.stop(self._low_water, reset=False)
        self._low_water = None
