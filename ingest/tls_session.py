"""The server side of one TLS connection over memory buffers, for the RTMPS listener.

The listener accepts plain TCP on the RTMPS port and does TLS itself, so that a connection is
counted against the connection caps from its accept (before any TLS byte) and a PROXY header
can come first, in clear: the bytes after it are the start of the handshake. Ciphertext goes in
with :meth:`TLSSession.receive`, which yields the plaintext it completes; what must go out (the
handshake's replies, an alert, the encrypted replies, ``close_notify``) is taken with
:meth:`TLSSession.data_to_send`. No I/O happens here: :class:`~ingest.transport.RTMPTransport`
moves the bytes. This is what asyncio's own ``ssl=`` transport does (``asyncio/sslproto.py``
drives an :class:`ssl.SSLObject` over two :class:`ssl.MemoryBIO`), without a second transport
and protocol in between.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import cast

from ingest.limits import CloseReason, ConnectionLimitHit


class TLSSession:
    """One connection's TLS state, the server side, with ``context`` (the listener's; its SNI
    callback may hand the handshake to a newer certificate, see :mod:`ingest.tls`)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.handshake_done = False
        """Whether the handshake completed (application data may flow)."""
        self.closed_by_peer = False
        """Whether the peer sent ``close_notify`` (its end of the stream)."""
        self._started = False

    def receive(self, data: bytes | memoryview, buffer: memoryview) -> Iterator[memoryview]:
        """Take the ciphertext ``data`` and yield the plaintext it completes, each piece a
        view of ``buffer`` that the next piece overwrites. Raises :class:`ConnectionLimitHit`
        if the handshake fails and :class:`ConnectionError` if a record is broken after it."""
        self._incoming.write(data)
        self._started = True
        if not self.handshake_done and not self._handshake():
            return
        while (size := self._fill(buffer)) > 0:
            yield buffer[:size]

    def send(self, data: bytes) -> None:
        """Encrypt ``data`` for :meth:`data_to_send` (nothing goes out before the handshake
        completes: an RTMP server speaks only after it has read)."""
        if self.handshake_done and data:
            self._ssl.write(data)

    def data_to_send(self) -> bytes:
        """The ciphertext that must go out now (possibly empty)."""
        return self._outgoing.read()

    def close(self) -> None:
        """Queue ``close_notify`` after a completed handshake (the peer's is not waited for)."""
        if not self.handshake_done:
            return
        try:
            self._ssl.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass  # sent ours; not waiting for the peer's, or the session already failed

    def cut_short(self) -> ConnectionLimitHit | None:
        """The peer left: whether it did so in the middle of the handshake (a client that
        refuses the certificate may close without an alert). Leaving before its first byte (a
        TCP health check) is not a failed handshake."""
        if not self._started or self.handshake_done:
            return None
        return ConnectionLimitHit(
            CloseReason.TLS_HANDSHAKE_FAILED,
            "TLS handshake failed: the client closed before finishing it (did it refuse the "
            "certificate?)",
        )

    def _handshake(self) -> bool:
        """Advance the handshake; whether it is done."""
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except ssl.SSLError as exc:
            reason = exc.reason or exc.strerror or str(exc)
            raise ConnectionLimitHit(
                CloseReason.TLS_HANDSHAKE_FAILED, f"TLS handshake failed: {reason}"
            ) from None
        self.handshake_done = True
        return True

    def _fill(self, buffer: memoryview) -> int:
        """Decrypt into ``buffer`` until it is full or no complete record waits; the bytes
        written. One read returns at most one record (16 KiB), so reads are gathered for the
        RTMP parser to take in one call."""
        filled, size = 0, len(buffer)
        while filled < size:
            try:
                # With a buffer, ``read`` returns the count of bytes it wrote (typeshed: bytes).
                count = cast(int, self._ssl.read(size - filled, buffer[filled:]))
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.closed_by_peer = True
                break
            except ssl.SSLError as exc:
                raise ConnectionResetError(f"TLS record refused: {exc.reason or exc}") from None
            if count == 0:  # close_notify (``SSLObject.read`` returns nothing then)
                self.closed_by_peer = True
                break
            filled += count
        return filled
