"""A raw RTMP client over loopback, shared by the unit and end-to-end tests: it publishes over a
plain socket one message at a time (so it can send what no encoder would), reads what the
server answers and sees when the server closes. The bytes are built by
:mod:`tests.protocol.helpers`."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from typing import Any

from tests.protocol.helpers import (
    ServerOutput,
    message_chunks,
    publish_bytes,
    set_chunk_size,
    statuses,
)


async def read_to_eof(reader: asyncio.StreamReader, timeout: float = 15.0) -> bytes:
    """Everything the server sends until it closes (fails if it does not within ``timeout``).
    A reset counts as the close: the server closed with bytes of ours unread."""
    data = bytearray()
    with contextlib.suppress(ConnectionResetError):
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                data += chunk
    return bytes(data)


async def first_statuses(
    reader: asyncio.StreamReader, output: ServerOutput | None = None
) -> list[dict[str, Any]]:
    """Read until the server answered with a status (or closed); return the statuses.
    ``output`` parses what the server sent (a new one expects the handshake first)."""
    if output is None:
        output = ServerOutput(expect_handshake=True)
    found: list[dict[str, Any]] = []
    async with asyncio.timeout(15):
        while not found and (data := await reader.read(65536)):
            found += statuses(output.feed(data))
    return found


@dataclass
class RawPublisher:
    """A publisher speaking RTMP over a plain socket, one message at a time: it sends what no
    encoder would (fake headers, floods) and sees when the server closes it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    chunk_size: int = 128
    output: ServerOutput = field(default_factory=lambda: ServerOutput(expect_handshake=True))
    """What the server sent, parsed."""

    @classmethod
    async def start(
        cls, port: int, key: str, *, tls: ssl.SSLContext | None = None, proxy_header: bytes = b""
    ) -> tuple[RawPublisher, list[str]]:
        """Connect to the RTMP port (with ``tls``: the RTMPS port) and publish with ``key``;
        return the publisher and the status codes the server answered. Once accepted it sends
        64 KiB chunks. A ``proxy_header`` is sent first, in clear (before any TLS)."""
        if proxy_header:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(proxy_header)
            await writer.drain()
            if tls is not None:
                await writer.start_tls(tls, server_hostname="127.0.0.1")
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
        writer.write(publish_bytes(key))
        output = ServerOutput(expect_handshake=True)
        codes = [status["code"] for status in await first_statuses(reader, output)]
        publisher = cls(reader, writer, output=output)
        if codes == ["NetStream.Publish.Start"]:
            writer.write(set_chunk_size(65536))
            publisher.chunk_size = 65536
        return publisher, codes

    async def send(self, type_id: int, timestamp: int, body: bytes) -> bool:
        """Send one message on message stream 1 and wait until the socket took it (so the
        sender holds at most one message); ``False`` once the server closed the connection."""
        self.writer.write(
            message_chunks(
                0, 6, body, timestamp=timestamp, type_id=type_id, chunk_size=self.chunk_size
            )
        )
        try:
            await self.writer.drain()
        except ConnectionError:
            return False
        return not self.reader.at_eof()

    async def closed_by_server(self, timeout: float = 15.0) -> bool:
        """Wait (at most ``timeout``) for the server to close; whether it did."""
        with contextlib.suppress(TimeoutError):
            await read_to_eof(self.reader, timeout)
            return True
        return False

    def close(self) -> None:
        self.writer.close()

    async def statuses_until_closed(self, timeout: float = 15.0) -> list[dict[str, Any]]:
        """The statuses the server sends from now until it closes the connection (fails if it
        does not close within ``timeout``)."""
        return statuses(self.output.feed(await read_to_eof(self.reader, timeout)))
