"""The PROXY header stage of an RTMP connection (``LIVERELAY_RTMP_PROXY_PROTOCOL``): a trusted
proxy's connection waits for its header before it is served as the client it reports; any other
peer's connection is refused if it begins with one.

:class:`ProxyHeaderWait` is fed from the transport's read callback and awaited by the
connection's task; the parsing is the sans-IO :class:`~ingest.proxy_protocol.ProxyHeaderReader`.
"""

from __future__ import annotations

import asyncio

from ingest.limits import CloseReason, ConnectionLimitHit
from ingest.proxy_protocol import (
    ProxyHeader,
    ProxyHeaderReader,
    ProxyProtocolError,
    starts_like_proxy_header,
)


class ProxyHeaderWait:
    """One connection's wait for its PROXY header."""

    def __init__(self, reader: ProxyHeaderReader) -> None:
        self._reader = reader
        self._header: asyncio.Future[ProxyHeader] = asyncio.get_running_loop().create_future()

    @property
    def waiting(self) -> bool:
        """Whether the header is still being read (it is neither read nor refused)."""
        return not self._header.done()

    def receive(self, data: bytes | memoryview) -> None:
        """Bytes from the peer while :attr:`waiting`; raises :class:`ConnectionLimitHit` if
        they are not a header (the awaiting task gets the same)."""
        try:
            header = self._reader.receive_data(data)
        except ProxyProtocolError as exc:
            reason = CloseReason.PROXY_HEADER_INVALID
            if exc.missing:
                reason = CloseReason.PROXY_HEADER_MISSING
            failure = ConnectionLimitHit(reason, str(exc))
            self._header.set_exception(failure)
            raise failure from None
        if header is not None:
            self._header.set_result(header)

    def take_rest(self) -> bytes:
        """The bytes that came after the header (once), for the RTMP parser."""
        rest, self._reader.rest = self._reader.rest, b""
        return rest

    def end(self, why: str) -> None:
        """The peer left: a task still waiting gets :class:`ConnectionError`."""
        if not self._header.done():
            self._header.set_exception(ConnectionError(why))

    async def header(self, deadline: float) -> ProxyHeader:
        """The header, once read. Raises :class:`ConnectionLimitHit` if the bytes are not one,
        :class:`TimeoutError` at the loop time ``deadline``, :class:`ConnectionError` if the
        peer leaves first."""
        async with asyncio.timeout_at(deadline):
            return await self._header


def refuse_proxy_header(data: bytes | memoryview) -> None:
    """The first bytes of a peer not in ``LIVERELAY_TRUSTED_PROXIES``: raise
    :class:`ConnectionLimitHit` if they begin like a PROXY header."""
    if starts_like_proxy_header(data):
        raise ConnectionLimitHit(
            CloseReason.PROXY_HEADER_UNTRUSTED,
            "PROXY header from an address not in LIVERELAY_TRUSTED_PROXIES",
        )
