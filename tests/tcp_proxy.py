"""A TCP proxy between a node and its database, which a test can cut and heal: a network
partition on loopback.

Each connection accepted on ``127.0.0.1:<port>`` is forwarded to the target, byte for byte.
:meth:`TcpProxy.cut` partitions in one of two ways:

- ``"reset"``: every open connection is reset (RST on both sides) and every new one is
  accepted and reset at once, so clients fail fast;
- ``"silent"``: nothing is closed, but nothing gets through either: what either side sends
  is read and dropped, and new connections are accepted and never forwarded. A client's
  query hangs until one of its own timeouts fires, as behind a dead switch.

:meth:`TcpProxy.heal` forwards new connections again. Connections held by a silent cut are
reset then (as a firewall that forgot them answers their next packet), never resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field
from typing import Literal

Cut = Literal["reset", "silent"]
CHUNK = 65536


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close ``writer``'s socket with an RST rather than a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client's side and the target's (``None`` when never
    forwarded)."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    silenced: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def reset(self) -> None:
        _reset(self.client)
        if self.upstream is not None:
            _reset(self.upstream)


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` (:attr:`port`, once :meth:`start`\\ ed) to
    ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self.cut_as: Cut | None = None
        """How the proxy is cut now (``None``: it forwards)."""
        self.accepted = 0
        """Connections accepted so far (forwarded or not)."""

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    def cut(self, how: Cut) -> None:
        """Partition: see the module docstring."""
        self.cut_as = how
        for link in list(self._links):
            if how == "reset":
                self._drop(link)
            else:
                link.silenced = True

    def heal(self) -> None:
        """Forward new connections again; reset those a silent cut held."""
        self.cut_as = None
        for link in list(self._links):
            if link.silenced:
                self._drop(link)

    async def close(self) -> None:
        """Stop listening and reset every connection."""
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            self._drop(link)
        tasks = [task for link in self._links for task in link.tasks]
        self._links.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _drop(self, link: _Link) -> None:
        link.reset()
        self._links.discard(link)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # the proxy (or its loop) closed
            await self._forward(reader, writer)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = _Link(writer)
        if self.cut_as == "reset":
            link.reset()
            return
        self._links.add(link)
        if self.cut_as == "silent":
            link.silenced = True
            await self._pump(reader, None, link)
            return
        try:
            up_reader, link.upstream = await asyncio.open_connection(*self._target)
        except OSError:
            self._drop(link)
            return
        if link not in self._links:  # reset while connecting
            link.reset()
            return
        there = asyncio.create_task(self._pump(reader, link.upstream, link))
        back = asyncio.create_task(self._pump(up_reader, writer, link))
        link.tasks |= {there, back}
        await asyncio.gather(there, back, return_exceptions=True)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter | None,
        link: _Link,
    ) -> None:
        """Copy ``reader`` to ``writer`` until either side closes; while the link is silenced,
        drop what is read instead."""
        try:
            while data := await reader.read(CHUNK):
                if link.silenced or writer is None:
                    continue
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if not link.silenced and link in self._links:
                # One side closed: close the other too (a FIN, as the proxy is not cut).
                self._links.discard(link)
                for side in (link.client, link.upstream):
                    if side is not None:
                        side.close()
