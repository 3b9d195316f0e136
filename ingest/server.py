"""The asyncio RTMP listener: sockets in, bytes to the sans-IO connection, events to a session.

Timeouts and connection limits live here; protocol rules live in :mod:`ingest.rtmp`, publish
rules in :mod:`ingest.session`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from config.settings import Settings
from ingest.authorizer import PublishAuthorizer
from ingest.live import LiveStreams
from ingest.rtmp.connection import RTMPServerConnection
from ingest.rtmp.errors import RTMPProtocolError
from ingest.session import PublishSession, PublishSink, SessionClosed

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024


class RTMPServer:
    """Accepts RTMP publishers on one listening socket."""

    def __init__(
        self,
        settings: Settings,
        *,
        authorizer: PublishAuthorizer,
        sink: PublishSink,
        live: LiveStreams,
    ) -> None:
        self._settings = settings
        self._authorizer = authorizer
        self._sink = sink
        self._live = live
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.rejected: dict[str, int] = {}
        """Connections closed early, by reason (for metrics)."""

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

    def _count_reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self._settings.rtmp_max_connections:
            self._count_reject("connection_limit")
            log.warning("RTMP connection from %s refused: connection limit reached", _peer(writer))
            writer.close()
            return
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        settings = self._settings
        client = _peer(writer)
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
            close_transport=writer.close,
        )
        clean, reason = False, "connection closed by publisher"
        try:
            clean, reason = await self._pump(reader, writer, conn, session)
        except RTMPProtocolError as exc:
            reason = f"protocol error: {exc}"
            self._count_reject("protocol_error")
            log.warning("RTMP connection from %s closed: %s", client, exc)
        except SessionClosed as exc:
            reason = str(exc)
            self._count_reject("refused")
            _flush(writer, conn)
        except TimeoutError:
            reason = "timed out" if session.publishing else "handshake/publish timed out"
            self._count_reject("timeout")
            log.warning("RTMP connection from %s closed: %s", client, reason)
        except (ConnectionError, OSError) as exc:
            reason = f"connection lost: {exc}"
        finally:
            await asyncio.shield(session.finish(clean=clean, reason=reason))

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: RTMPServerConnection,
        session: PublishSession,
    ) -> tuple[bool, str]:
        """Read until EOF; returns (clean, reason) for how the publish ended."""
        loop = asyncio.get_running_loop()
        handshake_deadline = loop.time() + self._settings.rtmp_handshake_timeout
        while True:
            timeout = self._settings.rtmp_idle_timeout
            if not session.publishing:
                timeout = max(0.0, handshake_deadline - loop.time())
            async with asyncio.timeout(timeout):
                data = await reader.read(READ_SIZE)
            if not data:
                return False, "connection closed by publisher"
            for event in conn.receive_data(data):
                await session.handle(event)
            _flush(writer, conn)
            if writer.is_closing():
                return True, "disconnected by server"


def _flush(writer: asyncio.StreamWriter, conn: RTMPServerConnection) -> None:
    out = conn.data_to_send()
    if out and not writer.is_closing():
        writer.write(out)


def _close(writer: asyncio.StreamWriter, conn: RTMPServerConnection) -> None:
    _flush(writer, conn)
    writer.close()


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
