"""The sans-IO TLS layer of the RTMPS listener (:class:`~ingest.tls_session.TLSSession`),
driven by an in-memory TLS client with no sockets: bytes fed whole and one at a time, garbage,
a client that leaves mid-handshake, ``close_notify``, and plaintext larger than the buffer."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from config.checks import load_server_certificate
from ingest.limits import CloseReason, ConnectionLimitHit
from ingest.tls_session import TLSSession
from tests.tls_support import CertificateFiles, make_certificate

MAX_ROUNDS = 20
"""Handshake round trips allowed before a test gives up (TLS needs two or three)."""


@pytest.fixture
def files(tmp_path: Path) -> CertificateFiles:
    return make_certificate(tmp_path, "session")


class MemoryClient:
    """A TLS client over memory buffers."""

    def __init__(self, files: CertificateFiles) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.ssl = files.client_context().wrap_bio(
            self.incoming, self.outgoing, server_hostname="127.0.0.1"
        )

    def handshake(self) -> bool:
        try:
            self.ssl.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True


def server_for(files: CertificateFiles) -> TLSSession:
    return TLSSession(load_server_certificate(str(files.cert), str(files.key)))


def feed(server: TLSSession, data: bytes, buffer: memoryview, *, one_byte: bool) -> bytes:
    """Feed ``data`` to ``server`` (whole or a byte at a time); the plaintext it gave."""
    pieces = [data[i : i + 1] for i in range(len(data))] if one_byte else [data]
    return b"".join(bytes(p) for piece in pieces for p in server.receive(piece, buffer))


def connect(server: TLSSession, client: MemoryClient, *, one_byte: bool = False) -> None:
    buffer = memoryview(bytearray(1024))
    for _ in range(MAX_ROUNDS):
        done = client.handshake()
        assert feed(server, client.outgoing.read(), buffer, one_byte=one_byte) == b""
        client.incoming.write(server.data_to_send())
        if done and server.handshake_done:
            return
    raise AssertionError("no handshake")


@pytest.mark.parametrize("one_byte", [False, True], ids=["whole", "one byte at a time"])
def test_a_handshake_then_data_both_ways(files: CertificateFiles, one_byte: bool) -> None:
    server, client = server_for(files), MemoryClient(files)
    connect(server, client, one_byte=one_byte)
    client.ssl.write(b"\x03" + bytes(1536))  # an RTMP C0C1
    buffer = memoryview(bytearray(64 * 1024))
    assert feed(server, client.outgoing.read(), buffer, one_byte=one_byte) == b"\x03" + bytes(1536)
    server.send(b"reply")
    client.incoming.write(server.data_to_send())
    assert client.ssl.read(100) == b"reply"


def test_plaintext_larger_than_the_buffer_comes_in_pieces(files: CertificateFiles) -> None:
    server, client = server_for(files), MemoryClient(files)
    connect(server, client)
    sent = bytes(range(256)) * 400  # 100 KiB: seven records
    client.ssl.write(sent)
    buffer = memoryview(bytearray(40_000))
    pieces = [bytes(piece) for piece in server.receive(client.outgoing.read(), buffer)]
    assert b"".join(pieces) == sent
    assert [len(piece) for piece in pieces] == [40_000, 40_000, 22_400]


def test_plain_rtmp_fails_the_handshake_with_an_alert(files: CertificateFiles) -> None:
    server = server_for(files)
    with pytest.raises(ConnectionLimitHit) as raised:
        list(server.receive(b"\x03" + bytes(1536), memoryview(bytearray(1024))))
    assert raised.value.reason is CloseReason.TLS_HANDSHAKE_FAILED
    assert str(raised.value) == "TLS handshake failed: WRONG_VERSION_NUMBER"
    assert not server.handshake_done


def test_a_client_refusing_the_certificate_fails_the_handshake(
    files: CertificateFiles, tmp_path: Path
) -> None:
    server = server_for(files)
    other = make_certificate(tmp_path, "other")  # the client trusts this one only
    client = MemoryClient(other)
    buffer = memoryview(bytearray(1024))
    with pytest.raises(ConnectionLimitHit) as raised:
        for _ in range(MAX_ROUNDS):
            try:
                client.handshake()
            except ssl.SSLCertVerificationError:
                pass  # the client's alert is in its outgoing buffer
            feed(server, client.outgoing.read(), buffer, one_byte=False)
            client.incoming.write(server.data_to_send())
    assert raised.value.reason is CloseReason.TLS_HANDSHAKE_FAILED
    assert "TLSV1_ALERT_UNKNOWN_CA" in str(raised.value)


def test_leaving_mid_handshake_is_a_failure_but_not_before_a_byte(
    files: CertificateFiles,
) -> None:
    server = server_for(files)
    assert server.cut_short() is None  # a TCP health check: connect, close
    client = MemoryClient(files)
    client.handshake()
    feed(server, client.outgoing.read(), memoryview(bytearray(1024)), one_byte=False)
    failure = server.cut_short()
    assert failure is not None and failure.reason is CloseReason.TLS_HANDSHAKE_FAILED
    assert "closed before finishing it" in str(failure)


def test_close_notify_ends_the_stream_both_ways(files: CertificateFiles) -> None:
    server, client = server_for(files), MemoryClient(files)
    connect(server, client)
    with pytest.raises(ssl.SSLWantReadError):
        client.ssl.unwrap()
    buffer = memoryview(bytearray(1024))
    assert feed(server, client.outgoing.read(), buffer, one_byte=False) == b""
    assert server.closed_by_peer
    assert server.cut_short() is None
    server.close()
    client.incoming.write(server.data_to_send())
    client.ssl.unwrap()  # the server's close_notify completes the client's shutdown


def test_nothing_is_sent_before_the_handshake(files: CertificateFiles) -> None:
    server = server_for(files)
    server.send(b"too early")
    server.close()
    assert server.data_to_send() == b""
