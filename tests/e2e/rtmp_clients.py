"""Raw RTMP clients against the whole app: a plain TCP connection to its RTMP port (from any
loopback address, with any receive buffer), the app's listener to look at, and sends that take
the server's reset as the end. (Reading what the server answers: ``tests/rtmp_client.py``.)"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable

from api.keys import RTMP_SERVER
from ingest.server import RTMPServer
from tests.e2e.conftest import LiveServer


def rtmp(live: LiveServer) -> RTMPServer:
    """The app's RTMP listener."""
    return live.app[RTMP_SERVER]


async def connect(
    live: LiveServer, *, local_host: str = "127.0.0.1", receive_buffer: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw TCP connection to the RTMP port, optionally with a small receive buffer."""
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.bind((local_host, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", live.rtmp_port))
    return await asyncio.open_connection(sock=sock)


async def tolerate_reset(send: Awaitable[None]) -> None:
    """``await send``, taking a connection the server reset as its end."""
    with contextlib.suppress(ConnectionError):
        await send
