"""The asyncio RTMP listener: sockets in, bytes to the sans-IO connection, events to a session.

Timeouts and limits live here (the limiters in :mod:`ingest.limits`); protocol rules live in
:mod:`ingest.rtmp`, publish rules in :mod:`ingest.session`. Every connection closed early is
logged with its reason and counted in :attr:`RTMPServer.rejected`; no log line carries a
stream key.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import struct
import time

from config.settings import Settings
from ingest.authorizer import PublishAuthorizer
from ingest.limits import AddressConnections, AuthFailureThrottle, Clock, CloseReason
from ingest.live import EndReason, LiveStreams
from ingest.rtmp.connection import RTMPServerConnection
from ingest.rtmp.errors import RTMPProtocolError
from ingest.rtmp.events import Event, PublishRequested
from ingest.session import PublishSession, PublishSink, SessionClosed
from ingest.stats import BitrateMeter

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
"""Bytes read and parsed at a time. A peer can make an event of every byte (empty media
messages), so this keeps the events of one read, held while a publish is being authorized, to
about 7 MB (256 KiB reads allowed about 30 MB)."""
BITRATE_WINDOW_SECONDS = 5
"""Window over which ``LIVERELAY_RTMP_MAX_PUBLISH_KBPS`` is averaged."""
CLOSE_GRACE_SECONDS = 5.0
"""How long a closing connection may take to flush its last replies before it is aborted."""


class ConnectionLimitHit(Exception):
    """A limit of the listener ends a connection; the message is the logged detail."""

    def __init__(self, reason: CloseReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class RTMPServer:
    """Accepts RTMP publishers on one listening socket.

    ``clock`` (monotonic seconds) drives the refused-key throttle and the bitrate limit;
    timeouts use the event loop's clock.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        authorizer: PublishAuthorizer,
        sink: PublishSink,
        live: LiveStreams,
        clock: Clock = time.monotonic,
    ) -> None:
        self._settings = settings
        self._authorizer = authorizer
        self._sink = sink
        self._live = live
        self._clock = clock
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._addresses = AddressConnections(settings.rtmp_max_connections_per_address)
        self._auth_failures = AuthFailureThrottle(
            settings.rtmp_auth_failures_per_minute, clock=clock
        )
        self.rejected: dict[str, int] = {}
        """Connections closed early, by :class:`~ingest.limits.CloseReason` value (for
        metrics)."""

    @property
    def connection_count(self) -> int:
        """RTMP connections open now."""
        return len(self._connections)

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("RTMP server is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Bind and start accepting connections."""
        self._server = await asyncio.start_server(
            self._accept,
            self._settings.rtmp_host,
            self._settings.rtmp_port,
            limit=READ_SIZE,
        )
        log.info("RTMP ingest listening on %s:%d", self._settings.rtmp_host, self.port)

    async def close(self) -> None:
        """Stop listening and end every connection (publishers' outputs wind down cleanly)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # -- accepting ------------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        client, host = _peer(writer), _host(writer)
        refusal = self._admit(host)
        if refusal is not None:
            self._closed_early(client, refusal.reason, str(refusal))
            writer.close()
            return
        self._connections.add(task)
        try:
            await self._serve(reader, writer, client, host)
        finally:
            try:
                await _close(writer)
            finally:  # only now: a connection still flushing holds its slot
                self._connections.discard(task)
                self._addresses.release(host)

    def _admit(self, host: str) -> ConnectionLimitHit | None:
        """Count a new connection from ``host``, or say which limit refuses it."""
        most = self._settings.rtmp_max_connections
        if len(self._connections) >= most:
            return ConnectionLimitHit(CloseReason.CONNECTION_LIMIT, f"{most} connections open")
        if not self._addresses.acquire(host):
            return ConnectionLimitHit(
                CloseReason.ADDRESS_LIMIT, f"{self._addresses.open(host)} open from its address"
            )
        return None

    def _closed_early(
        self, client: str, reason: CloseReason, detail: str, level: int = logging.WARNING
    ) -> None:
        self.rejected[reason.value] = self.rejected.get(reason.value, 0) + 1
        log.log(level, "RTMP connection from %s closed (%s): %s", client, reason.value, detail)

    # -- one connection -------------------------------------------------------------------------

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: str, host: str
    ) -> None:
        settings = self._settings
        conn = RTMPServerConnection(
            max_message_size=settings.rtmp_max_message_size,
            max_chunk_size=settings.rtmp_max_chunk_size,
        )
        session = PublishSession(
            conn,
            client_address=client,
            authorizer=self._authorizer,
            sink=self._sink,
            live=self._live,
            close_transport=functools.partial(_flush_and_close, writer, conn),
        )
        clean, reason = False, "connection closed by publisher"
        timed_out = False
        try:
            clean, reason = await self._pump(reader, writer, conn, session, host)
        except RTMPProtocolError as exc:
            reason = f"protocol error: {exc}"
            self._closed_early(client, CloseReason.PROTOCOL_ERROR, reason)
        except SessionClosed as exc:
            reason = str(exc)
            self._refused(client, host, exc)
            _flush(writer, conn)
        except ConnectionLimitHit as exc:
            reason = str(exc)
            timed_out = exc.reason is CloseReason.IDLE_TIMEOUT
            self._closed_early(client, exc.reason, reason)
            if exc.reason is CloseReason.SLOW_READER:
                _abort(writer)  # closing would wait for a peer that does not read
        except (ConnectionError, OSError) as exc:
            reason = f"connection lost: {exc}"
        finally:
            end: EndReason = "publisher_left" if clean or not timed_out else "timed_out"
            await asyncio.shield(session.finish(clean=clean, reason=end, detail=reason))

    def _refused(self, client: str, host: str, exc: SessionClosed) -> None:
        """Count a refusal by the session (which logged it); a refused key counts against the
        address."""
        self._closed_early(client, exc.reason, str(exc), logging.INFO)
        if exc.reason is CloseReason.BAD_KEY and self._auth_failures.record_failure(host):
            log.warning(
                "RTMP publishes from %s refused unchecked for %.0f s: %d bad stream keys in %.0f s",
                host,
                self._auth_failures.retry_after(host),
                self._auth_failures.max_failures,
                self._auth_failures.window,
            )

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: RTMPServerConnection,
        session: PublishSession,
        host: str,
    ) -> tuple[bool, str]:
        """Read until EOF; returns (clean, reason) for how the publish ended."""
        deadline = asyncio.get_running_loop().time() + self._settings.rtmp_handshake_timeout
        meter = (
            BitrateMeter(BITRATE_WINDOW_SECONDS) if self._settings.rtmp_max_publish_kbps else None
        )
        watchdog: _IdleWatchdog | None = None
        try:
            while True:
                if session.publishing:
                    if watchdog is None:
                        watchdog = _IdleWatchdog(self._settings.rtmp_idle_timeout)
                    data = await self._read_publishing(reader, watchdog)
                else:
                    data = await self._read(reader, session, deadline)
                if not data:
                    return False, "connection closed by publisher"
                if meter is not None:
                    self._check_bitrate(meter, len(data))
                for event in conn.receive_data(data):
                    await self._handle(event, conn, session, host)
                self._send(writer, conn)
                if writer.is_closing():
                    return True, "disconnected by server"
        finally:
            if watchdog is not None:
                watchdog.close()

    async def _read_publishing(
        self, reader: asyncio.StreamReader, watchdog: _IdleWatchdog
    ) -> bytes:
        """The next bytes of a publishing connection, within the idle timeout. Same semantics
        as :meth:`_read`, without creating and cancelling a timer for every read."""
        watchdog.reading_since = watchdog.loop.time()
        try:
            data = await reader.read(READ_SIZE)
        except asyncio.CancelledError:
            if watchdog.expired():
                raise ConnectionLimitHit(
                    CloseReason.IDLE_TIMEOUT, f"no data for {watchdog.timeout:g} s"
                ) from None
            raise
        finally:
            watchdog.reading_since = None
        if watchdog.expired():  # fired just as the data came: the timeout wins
            raise ConnectionLimitHit(
                CloseReason.IDLE_TIMEOUT, f"no data for {watchdog.timeout:g} s"
            )
        return data

    async def _read(
        self, reader: asyncio.StreamReader, session: PublishSession, deadline: float
    ) -> bytes:
        """The next bytes, within the idle timeout (publishing) or the handshake deadline."""
        settings = self._settings
        if session.publishing:
            timeout, reason = settings.rtmp_idle_timeout, CloseReason.IDLE_TIMEOUT
            detail = f"no data for {timeout:g} s"
        else:
            timeout = max(0.0, deadline - asyncio.get_running_loop().time())
            reason = CloseReason.HANDSHAKE_TIMEOUT
            detail = f"not publishing {settings.rtmp_handshake_timeout:g} s after connecting"
        try:
            async with asyncio.timeout(timeout):
                return await reader.read(READ_SIZE)
        except TimeoutError:
            raise ConnectionLimitHit(reason, detail) from None

    async def _handle(
        self, event: Event, conn: RTMPServerConnection, session: PublishSession, host: str
    ) -> None:
        """Pass ``event`` to the session, unless it is a publish from a throttled address: that
        one is refused before the authorizer is asked."""
        if isinstance(event, PublishRequested) and self._auth_failures.blocked(host):
            description = "Too many refused stream keys; try again later."
            conn.reject_publish(event.stream_id, description=description)
            raise SessionClosed(
                "publish refused: too many refused stream keys from this address",
                CloseReason.AUTH_THROTTLED,
            )
        await session.handle(event)

    def _check_bitrate(self, meter: BitrateMeter, size: int) -> None:
        now = self._clock()
        meter.add(now, size)
        kbps, most = meter.kbps(now), self._settings.rtmp_max_publish_kbps
        if kbps > most:
            raise ConnectionLimitHit(
                CloseReason.BITRATE_LIMIT,
                f"{kbps:.0f} kbit/s over {BITRATE_WINDOW_SECONDS} s exceeds {most} kbit/s",
            )

    def _send(self, writer: asyncio.StreamWriter, conn: RTMPServerConnection) -> None:
        """Write the queued replies; a peer that leaves too many unread is dropped."""
        _flush(writer, conn)
        unsent = writer.transport.get_write_buffer_size()
        if unsent > self._settings.rtmp_max_send_buffer:
            raise ConnectionLimitHit(
                CloseReason.SLOW_READER, f"client does not read: {unsent} bytes unsent"
            )


class _IdleWatchdog:
    """The idle timeout of one publishing connection: one timer, re-armed only when it fires
    while a read is younger than the timeout (at most once per timeout), rather than an
    ``asyncio.timeout()`` per read. When a read has waited the whole timeout, it cancels the
    reading task, as ``asyncio.timeout()`` would."""

    __slots__ = ("_fired", "_handle", "_task", "loop", "reading_since", "timeout")

    def __init__(self, timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.timeout = timeout
        self.reading_since: float | None = None
        """Loop time the pending read started, None between reads."""
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._fired = False
        self._handle: asyncio.TimerHandle | None = self.loop.call_later(timeout, self._check)

    def _check(self) -> None:
        since = self.reading_since
        now = self.loop.time()
        if since is not None and now - since >= self.timeout - 0.001:
            self._handle = None
            self._fired = True
            self._task.cancel()
            return
        start = since if since is not None else now
        self._handle = self.loop.call_at(start + self.timeout, self._check)

    def expired(self) -> bool:
        """Whether the timeout fired (consumed: the task's cancel request is withdrawn)."""
        if not self._fired:
            return False
        self._fired = False
        self.close()
        return self._task.uncancel() == 0

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def _flush(writer: asyncio.StreamWriter, conn: RTMPServerConnection) -> None:
    out = conn.data_to_send()
    if out and not writer.is_closing():
        writer.write(out)


def _flush_and_close(writer: asyncio.StreamWriter, conn: RTMPServerConnection) -> None:
    """End the connection from outside its task (API delete, replaced publisher), sending the
    session's last status first."""
    _flush(writer, conn)
    writer.close()


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close, letting the last replies go out for a little while, then abort."""
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_GRACE_SECONDS):
            await writer.wait_closed()
    except TimeoutError:
        _abort(writer)  # a peer that never reads would otherwise pin the connection
    except (ConnectionError, OSError):
        pass
    except asyncio.CancelledError:  # server shutdown
        _abort(writer)
        raise


def _abort(writer: asyncio.StreamWriter) -> None:
    """Drop the connection with a reset. A linger time of 0 makes the kernel discard the unsent
    bytes too, instead of keeping up to a send buffer of them for a peer that does not read."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


def _host(writer: asyncio.StreamWriter) -> str:
    """The client's IP address (what per-address limits count)."""
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer)
