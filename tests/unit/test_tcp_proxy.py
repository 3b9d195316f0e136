"""The partition proxy of the cluster tests (``tests/tcp_proxy.py``) against an echo server on
loopback: it forwards, a reset cut fails connections at once, a silent cut lets nothing through
without closing anything, and a heal forwards new connections again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.tcp_proxy import TcpProxy


class Echo:
    """An echo server that keeps what it received."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(1024):
                self.received += data
                writer.write(data)
                await writer.drain()
        writer.close()


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    echo = Echo()
    echo.server = await asyncio.start_server(echo._serve, "127.0.0.1", 0)
    yield echo
    echo.server.close()


@pytest.fixture
async def proxy(echo: Echo) -> AsyncIterator[TcpProxy]:
    assert echo.server is not None
    proxy = await TcpProxy("127.0.0.1", echo.server.sockets[0].getsockname()[1]).start()
    yield proxy
    await proxy.close()


async def connect(proxy: TcpProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def echoed(proxy: TcpProxy, data: bytes) -> bytes:
    reader, writer = await connect(proxy)
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.readexactly(len(data)), 5)
    finally:
        writer.close()


async def refused(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Whether the connection is reset (or closed) rather than answered."""
    try:
        writer.write(b"x")
        await writer.drain()
        return await asyncio.wait_for(reader.read(1), 5) == b""
    except ConnectionResetError:
        return True


async def test_the_proxy_forwards_until_a_reset_cut_and_again_once_healed(
    proxy: TcpProxy,
) -> None:
    assert await echoed(proxy, b"hello") == b"hello"
    reader, writer = await connect(proxy)
    assert await echoed(proxy, b"open") == b"open"
    proxy.cut("reset")
    assert await refused(reader, writer)
    assert await refused(*await connect(proxy))
    proxy.heal()
    assert await echoed(proxy, b"again") == b"again"


async def test_a_silent_cut_drops_everything_and_closes_nothing_until_healed(
    proxy: TcpProxy, echo: Echo
) -> None:
    held_reader, held_writer = await connect(proxy)
    held_writer.write(b"before")
    assert await asyncio.wait_for(held_reader.readexactly(6), 5) == b"before"
    proxy.cut("silent")
    new_reader, new_writer = await connect(proxy)  # accepted, never forwarded
    for writer in (held_writer, new_writer):
        writer.write(b"lost")
        await writer.drain()
    for reader in (held_reader, new_reader):
        with pytest.raises(TimeoutError):  # no answer, no close: the wait runs out
            await asyncio.wait_for(reader.read(1), 0.3)
    assert bytes(echo.received) == b"before"
    proxy.heal()
    assert await refused(held_reader, held_writer)  # reset, never resumed
    assert await refused(new_reader, new_writer)
    assert await echoed(proxy, b"healed") == b"healed"
