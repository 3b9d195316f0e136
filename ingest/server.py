"""The asyncio RTMP listener: accepts connections and runs each one's task.

Each accepted connection gets an :class:`~ingest.transport.RTMPTransport` (the socket side,
which parses in the read callback), a sans-IO
:class:`~ingest.rtmp.connection.RTMPServerConnection`, a
:class:`~ingest.publisher.PublisherConnection` (its publish rules) and one task,
:meth:`RTMPServer._connection`, that owns it until it is closed and handles every way it ends.
Timeouts and the listener's limits are applied here (the limiters are in
:mod:`ingest.limits`, the rate of TLS handshakes in :mod:`ingest.handshake_rate`). Every
connection closed early is counted in :attr:`RTMPServer.rejected` and logged with its reason,
warnings at a limited rate (:mod:`ingest.refusals`). No log line carries a stream key.

The per-address cap counts only connections that are not publishing: once a publish is
accepted its connection leaves the count, so encoders behind one address (a studio, an office
NAT) are bounded by the total cap and one publisher per stream key, not by the cap meant for
strangers.

With ``LIVERELAY_RTMP_PROXY_PROTOCOL``, a connection from ``LIVERELAY_TRUSTED_PROXIES`` first
waits for its PROXY header (:meth:`RTMPServer._proxied_connection`) and is then served, counted
and logged as the client the header reports; see :mod:`ingest.proxied`.
"""

from __future__ import annotations

import asyncio
import logging
import time

from config.settings import Settings
from ingest.batching import ReadBatcher
from ingest.client_address import TrustedProxies, peer_address, reported_client
from ingest.handshake_rate import HandshakeRate
from ingest.limits import (
    AddressConnections,
    AuthFailureThrottle,
    Clock,
    CloseReason,
    ConnectionLimitHit,
    handshake_timeout,
)
from ingest.live import EndReason, PathAdmission
from ingest.proxied import ProxyHeaderWait
from ingest.proxy_protocol import ProxyHeaderReader
from ingest.publisher import EndConnection, PublisherConnection
from ingest.refusals import Refusals
from ingest.rtmp.connection import RTMPServerConnection
from ingest.rtmp.errors import RTMPProtocolError
from ingest.rtmp.events import Event, PublishRequested
from ingest.tls import ServerCertificate
from ingest.tls_session import TLSSession
from ingest.transport import RTMPTransport

log = logging.getLogger(__name__)

CLOSE_GRACE_SECONDS = 5.0
"""How long a closing connection may take to flush its last replies before it is aborted."""


class RTMPServer:
    """Accepts RTMP publishers on one listening socket, and RTMPS publishers on a second one
    when given a ``certificate``: both share the same limits, throttle and admission.

    ``clock`` (monotonic seconds) drives the refused-key throttle, the bitrate limit and the
    rate of warnings; timeouts use the event loop's clock.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        admission: PathAdmission,
        clock: Clock = time.monotonic,
        certificate: ServerCertificate | None = None,
    ) -> None:
        """``admission`` checks stream keys and admits publishers to their streams' paths;
        with ``certificate`` the server also listens for RTMPS on ``settings.rtmps_port``."""
        self._settings = settings
        self._admission = admission
        self._clock = clock
        self._server: asyncio.Server | None = None
        self._certificate = certificate
        self._tls_server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._addresses = AddressConnections(settings.rtmp_max_connections_per_address)
        self._not_publishing: set[RTMPTransport] = set()
        """Connections counted in ``_addresses``: every one until its publish is accepted."""
        self._refusals = Refusals(log, clock=clock)
        self._auth_failures = AuthFailureThrottle(
            settings.rtmp_auth_failures_per_minute, clock=clock
        )
        rate, burst = settings.rtmps_handshake_rate, settings.rtmps_handshake_burst
        self._handshakes = HandshakeRate(rate, burst, clock=clock)
        proxies = settings.trusted_proxy_networks if settings.rtmp_proxy_protocol else None
        self._proxies = None if proxies is None else TrustedProxies(proxies)
        """Whose connections begin with a PROXY header; ``None``: nobody's."""
        self._closing = False
        interval = settings.rtmp_read_interval
        self._batcher = ReadBatcher(interval) if interval > 0 else None
        self.rejected = self._refusals.counts
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

    @property
    def tls_port(self) -> int | None:
        """The bound RTMPS port; ``None`` without RTMPS."""
        if self._tls_server is None or not self._tls_server.sockets:
            return None
        return int(self._tls_server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Bind and start accepting connections."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_transport, self._settings.rtmp_host, self._settings.rtmp_port
        )
        log.info("RTMP ingest listening on %s:%d", self._settings.rtmp_host, self.port)
        if (certificate := self._certificate) is not None:
            settings = self._settings
            # Plain TCP: the caps apply at the accept, and TLS (in the transport) comes after
            # any PROXY header; the TLS handshake counts in the handshake timeout (``_serve``).
            self._tls_server = await loop.create_server(
                lambda: self._new_transport(TLSSession(certificate.context)),
                settings.rtmps_listen_host,
                settings.rtmps_port,
            )
            log.info("RTMPS ingest listening on %s:%d", settings.rtmps_listen_host, self.tls_port)

    async def close(self) -> None:
        """Stop listening and end every connection (publishers' outputs wind down cleanly)."""
        self._closing = True
        for server in (self._server, self._tls_server):
            if server is not None:
                server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        for server in (self._server, self._tls_server):
            if server is not None:
                await server.wait_closed()
        if self._batcher is not None:
            self._batcher.close()

    # -- accepting ------------------------------------------------------------------------------

    def _new_transport(self, tls: TLSSession | None = None) -> RTMPTransport:
        settings = self._settings
        return RTMPTransport(
            self._accept,
            batcher=self._batcher,
            idle_timeout=settings.rtmp_idle_timeout,
            max_send_buffer=settings.rtmp_max_send_buffer,
            max_publish_kbps=settings.rtmp_max_publish_kbps,
            clock=self._clock,
            tls=tls,
        )

    def _accept(self, transport: RTMPTransport) -> None:
        """A connection came in: refuse it at once, or start its task."""
        assert transport.transport is not None
        client, host = peer_address(transport.transport.get_extra_info("peername"))
        if self._closing:
            transport.abort()
            return
        proxies = self._proxies  # on the RTMPS port too: the header comes before TLS
        proxied = proxies is not None and proxies.trusts(host)
        refusal = self._admit(None if proxied else host, transport.tls is not None)
        if refusal is not None:
            self._refusals.closed_early(client, refusal.reason, str(refusal))
            transport.transport.close()
            return
        if proxied:
            transport.header_wait = ProxyHeaderWait(ProxyHeaderReader())
            serve = self._proxied_connection(transport, client, host)
        else:
            transport.refuse_proxy_header = proxies is not None
            serve = self._connection(transport, self._attach(transport, client), client, host)
        self._connections.add(asyncio.get_running_loop().create_task(serve))

    def _attach(self, transport: RTMPTransport, client: str) -> PublisherConnection:
        """Serve ``transport`` as ``client``'s connection, counted against its address until
        it publishes (it was acquired)."""
        settings = self._settings
        conn = RTMPServerConnection(
            max_message_size=settings.rtmp_max_message_size,
            max_chunk_size=settings.rtmp_max_chunk_size,
        )
        publisher = PublisherConnection(
            conn,
            client_address=client,
            admission=self._admission,
            close_transport=transport.close_from_outside,
        )
        transport.attach(conn, publisher)
        self._not_publishing.add(transport)
        return publisher

    def _admit(self, host: str | None, tls: bool) -> ConnectionLimitHit | None:
        """Count a new connection (from ``host``, against its address until it publishes;
        ``None``: not yet known), or say which limit refuses it."""
        most = self._settings.rtmp_max_connections
        if len(self._connections) >= most:
            return ConnectionLimitHit(CloseReason.CONNECTION_LIMIT, f"{most} connections open")
        return None if host is None else self._admit_address(host, tls)

    def _admit_address(self, host: str, tls: bool) -> ConnectionLimitHit | None:
        """Count a connection against ``host``'s address and, with ``tls`` (the RTMPS port),
        its TLS handshake against the address's rate; or say which refuses it."""
        if not self._addresses.acquire(host):
            return ConnectionLimitHit(
                CloseReason.ADDRESS_LIMIT, f"{self._addresses.open(host)} open from its address"
            )
        if tls and (refusal := self._handshakes.admit(host)) is not None:
            self._addresses.release(host)
            return refusal
        return None

    def _leave_address_count(self, transport: RTMPTransport, host: str) -> None:
        """Stop counting ``transport`` against its address (once): it closed, or its publish
        was accepted."""
        if transport in self._not_publishing:
            self._not_publishing.discard(transport)
            self._addresses.release(host)

    # -- one connection -------------------------------------------------------------------------

    async def _proxied_connection(
        self, transport: RTMPTransport, proxy: str, proxy_host: str
    ) -> None:
        """The task of a trusted proxy's connection: its PROXY header, then the connection of
        the client it reports (:meth:`_connection`), unless it is refused or the proxy left."""
        served = False
        try:
            found = await self._reported_client(transport, proxy, proxy_host)
            if found is not None:
                client, host = found
                publisher = self._attach(transport, client)
                served = True  # from here on, _connection ends it
                await self._connection(transport, publisher, client, host)
        except Exception:  # a bug must not take the listener or other streams down
            log.exception("RTMP connection from %s failed", proxy)
        finally:
            if not served:
                try:
                    await transport.close(CLOSE_GRACE_SECONDS)
                finally:
                    self._connections.discard(asyncio.current_task())  # type: ignore[arg-type]

    async def _reported_client(
        self, transport: RTMPTransport, proxy: str, proxy_host: str
    ) -> tuple[str, str] | None:
        """Wait for the PROXY header; the ``(client, host)`` it reports, counted against that
        address. ``None`` if refused (counted and logged) or the proxy left first."""
        seconds = self._settings.rtmp_handshake_timeout
        assert transport.header_wait is not None
        try:
            header = await transport.header_wait.header(transport.accepted_at + seconds)
        except TimeoutError:
            timeout = handshake_timeout(seconds)
            self._refusals.closed_early(proxy, timeout.reason, f"{timeout} (no PROXY header)")
            return None
        except ConnectionLimitHit as exc:
            self._refusals.closed_early(proxy, exc.reason, str(exc))
            return None
        except ConnectionError as exc:  # e.g. a proxy's health check: connect, then close
            log.debug("RTMP connection from %s %s", proxy, exc)
            return None
        client, host = reported_client(header, proxy, proxy_host)
        what = f"PROXY v{header.version} {header.command}"
        log.debug("RTMP connection from %s carries %s (%s)", proxy, client, what)
        if (refusal := self._admit_address(host, transport.tls is not None)) is not None:
            self._refusals.closed_early(client, refusal.reason, str(refusal))
            return None
        return client, host

    async def _connection(
        self, transport: RTMPTransport, publisher: PublisherConnection, client: str, host: str
    ) -> None:
        """The task of one accepted connection, from accept to close. However the connection
        ends (the publisher leaves, a limit or a protocol error, a refusal, the path or the
        server ending it, a bug), it ends here: counted and logged, the path told that its
        publisher left, the socket closed, the connection's slot freed."""
        clean, timed_out, detail = False, False, "connection closed by publisher"
        try:
            try:
                clean, detail = await self._serve(transport, publisher, host)
            except RTMPProtocolError as exc:
                detail = f"protocol error: {exc}"
                self._refusals.closed_early(client, CloseReason.PROTOCOL_ERROR, detail)
            except EndConnection as exc:  # refused: bad app or key, play, a throttled address
                detail = str(exc)
                self._refused(client, host, exc)
                transport.flush()
            except ConnectionLimitHit as exc:
                detail = str(exc)
                timed_out = exc.reason is CloseReason.IDLE_TIMEOUT
                self._refusals.closed_early(client, exc.reason, detail)
                if exc.reason is CloseReason.TLS_HANDSHAKE_FAILED:
                    self._handshakes.failed(host)
                if exc.reason is CloseReason.SLOW_READER:
                    transport.abort()  # closing would wait for a peer that does not read
            except (ConnectionError, OSError) as exc:
                detail = f"connection lost: {exc}"
            finally:  # a bug or the server's shutdown too: the path must learn its publisher left
                end: EndReason = "timed_out" if timed_out else "publisher_left"
                await asyncio.shield(publisher.finish(clean=clean, reason=end, detail=detail))
        except Exception:  # a bug must not take the listener or other streams down
            log.exception("RTMP connection from %s failed", client)
        finally:
            try:
                await transport.close(CLOSE_GRACE_SECONDS)
            finally:  # only now: a connection still flushing holds its slot
                self._connections.discard(asyncio.current_task())  # type: ignore[arg-type]
                self._leave_address_count(transport, host)

    async def _serve(
        self, transport: RTMPTransport, publisher: PublisherConnection, host: str
    ) -> tuple[bool, str]:
        """Handle the events that must wait (a publish, an unpublish) until the connection
        ends. Returns (clean, detail) when it ends without an error (an unpublish is clean, a
        publisher that just went away is not); raises what ended it otherwise."""
        handshake_seconds = self._settings.rtmp_handshake_timeout
        deadline = transport.accepted_at + handshake_seconds  # a TLS handshake included
        while True:
            if not transport.has_news:
                try:
                    await transport.wait(None if publisher.publishing else deadline)
                except TimeoutError:
                    raise handshake_timeout(handshake_seconds, transport.unfinished) from None
            transport.raise_failure(all_events_handled=False)
            while (event := transport.next_event()) is not None:
                await self._handle(event, transport, publisher, host)
                transport.handled()
            transport.raise_failure(all_events_handled=True)
            transport.settle(publishing=publisher.publishing)
            if transport.closed_by_server:
                return True, "disconnected by server"
            if transport.peer_gone:
                return False, "connection closed by publisher"
            if publisher.ended:  # unpublished: close rather than wait for a handshake deadline
                return True, "publish ended"

    async def _handle(
        self,
        event: Event,
        transport: RTMPTransport,
        publisher: PublisherConnection,
        host: str,
    ) -> None:
        """Pass ``event`` to the publish rules, unless it is a publish from a throttled
        address: that one is refused before its key is checked. An accepted publish leaves
        the per-address count."""
        if isinstance(event, PublishRequested) and self._auth_failures.blocked(host):
            description = "Too many refused stream keys; try again later."
            publisher.conn.reject_publish(event.stream_id, description=description)
            raise EndConnection(
                "publish refused: too many refused stream keys from this address",
                CloseReason.AUTH_THROTTLED,
            )
        await publisher.handle(event)
        if publisher.publishing:
            self._leave_address_count(transport, host)

    def _refused(self, client: str, host: str, exc: EndConnection) -> None:
        """Count a refusal by the publish rules (which logged it); a refused key counts
        against the address."""
        self._refusals.closed_early(client, exc.reason, str(exc), logging.INFO)
        if exc.reason is CloseReason.BAD_KEY and self._auth_failures.record_failure(host):
            log.warning(
                "RTMP publishes from %s refused unchecked for %.0f s: %d bad stream keys in %.0f s",
                host,
                self._auth_failures.retry_after(host),
                self._auth_failures.max_failures,
                self._auth_failures.window,
            )
