"""The RTMPS listener of :class:`~ingest.server.RTMPServer`: RTMP over TLS on its own port,
with the same rules as the plain one, a certificate reloaded for new handshakes only, and
clients of the wrong kind closed within the handshake timeout. Real TLS over loopback; the
live paths are stubbed (:class:`~tests.fakes.StubAdmission`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from ingest.server import RTMPServer
from ingest.tls import ServerCertificate
from tests.fakes import FakeClock, StubAdmission
from tests.polling import eventually
from tests.protocol.helpers import C0C1, VIDEO
from tests.rtmp_client import RawPublisher, read_to_eof
from tests.tls_support import (
    CertificateFiles,
    RTMPSServers,
    make_certificate,
    peer_common_name,
)

KEY = "k" * 20
STREAM = "5" * 24
AVC_HEADER = b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f"
HANDSHAKE_SECONDS = 0.5
"""The handshake timeout of these tests' server (short: wrong clients wait this long)."""
CLOSE_BOUND = 10.0
"""How long a test waits for a close the handshake timeout must bring."""


@pytest.fixture
def first(tmp_path: Path) -> CertificateFiles:
    return make_certificate(tmp_path, "first")


@pytest.fixture
def admission() -> StubAdmission:
    return StubAdmission({KEY: STREAM})


@pytest.fixture
def certificate(first: CertificateFiles) -> ServerCertificate:
    return ServerCertificate(str(first.cert), str(first.key))


ServerFactory = Callable[..., Awaitable[RTMPServer]]


@pytest.fixture
async def servers(
    tmp_path: Path,
    first: CertificateFiles,
    certificate: ServerCertificate,
    admission: StubAdmission,
) -> AsyncIterator[ServerFactory]:
    """Starts RTMP servers with RTMPS on and the given settings; closes them."""
    started = RTMPSServers(
        tmp_path,
        first,
        admission=admission,
        clock=FakeClock(),
        handshake_timeout=HANDSHAKE_SECONDS,
        certificate=certificate,
    )
    yield started.start
    await started.close()


@pytest.fixture
async def server(servers: ServerFactory) -> RTMPServer:
    return await servers()


def tls_port(server: RTMPServer) -> int:
    assert server.tls_port is not None
    return server.tls_port


def shown_name(publisher: RawPublisher) -> str:
    """The common name of the certificate the server showed this publisher."""
    ssl_object = publisher.writer.get_extra_info("ssl_object")
    assert isinstance(ssl_object, ssl.SSLObject)
    der = ssl_object.getpeercert(binary_form=True)
    assert der is not None
    return peer_common_name(der)


async def test_a_publish_over_tls_feeds_its_path(
    server: RTMPServer, admission: StubAdmission, first: CertificateFiles
) -> None:
    publisher, codes = await RawPublisher.start(tls_port(server), KEY, tls=first.client_context())
    assert codes == ["NetStream.Publish.Start"]
    assert shown_name(publisher) == "first"
    path = admission.paths[-1]
    assert await publisher.send(VIDEO, 0, AVC_HEADER)
    await eventually(lambda: path.hub.bytes_in == len(AVC_HEADER))
    publisher.close()
    await asyncio.wait_for(path.left.wait(), CLOSE_BOUND)


async def test_both_listeners_share_the_connection_limits(
    server: RTMPServer, first: CertificateFiles
) -> None:
    _, plain_writer = await asyncio.open_connection("127.0.0.1", server.port)
    _, secure_writer = await asyncio.open_connection(
        "127.0.0.1", tls_port(server), ssl=first.client_context()
    )
    await eventually(lambda: server.connection_count == 2)
    for writer in (plain_writer, secure_writer):
        writer.close()
    await eventually(lambda: server.connection_count == 0)


async def test_a_plain_rtmp_client_on_the_tls_port_is_refused_as_a_failed_tls_handshake(
    server: RTMPServer, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_port(server))
    with caplog.at_level(logging.WARNING, logger="ingest.server"):
        writer.write(C0C1)
        rest = await read_to_eof(reader, CLOSE_BOUND)
        await eventually(lambda: server.connection_count == 0, CLOSE_BOUND)
    assert not rest.startswith(b"\x03")  # no RTMP answer: at most a TLS alert, then the close
    assert server.rejected == {"tls_handshake_failed": 1}
    [record] = [r for r in caplog.records if "tls_handshake_failed" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "TLS handshake failed" in record.getMessage()
    writer.close()


async def test_a_client_that_does_not_trust_the_certificate_is_counted(
    server: RTMPServer,
) -> None:
    """An encoder refusing the certificate (expired, another name, an unknown issuer) shows
    in the counts, so that an operator can see it."""
    untrusting = ssl.create_default_context()  # the system's CAs: not this self-signed one
    with pytest.raises(ssl.SSLError):
        async with asyncio.timeout(CLOSE_BOUND):
            await asyncio.open_connection("127.0.0.1", tls_port(server), ssl=untrusting)
    await eventually(lambda: server.rejected == {"tls_handshake_failed": 1}, CLOSE_BOUND)


async def test_a_silent_client_on_the_tls_port_is_closed_at_the_handshake_timeout(
    server: RTMPServer,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_port(server))
    assert await read_to_eof(reader, CLOSE_BOUND) == b""
    await eventually(lambda: server.rejected == {"handshake_timeout": 1}, CLOSE_BOUND)
    writer.close()


async def test_tls_handshakes_in_progress_count_against_the_connection_caps(
    servers: ServerFactory,
) -> None:
    """The caps apply at the TCP accept: a client that opens connections and never finishes
    (or starts) a TLS handshake holds at most its per-address share."""
    server = await servers(rtmp_handshake_timeout=60.0, rtmp_max_connections_per_address=1)
    _, first_writer = await asyncio.open_connection("127.0.0.1", tls_port(server))
    await eventually(lambda: server.connection_count == 1)
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_port(server))
    assert await read_to_eof(reader, CLOSE_BOUND) == b""
    assert server.rejected == {"address_limit": 1}
    assert server.connection_count == 1
    for each in (first_writer, writer):
        each.close()
    await eventually(lambda: server.connection_count == 0, CLOSE_BOUND)


async def test_the_total_cap_counts_tls_handshakes_in_progress(servers: ServerFactory) -> None:
    server = await servers(rtmp_handshake_timeout=60.0, rtmp_max_connections=1)
    _, first_writer = await asyncio.open_connection("127.0.0.1", server.port)
    await eventually(lambda: server.connection_count == 1)
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_port(server))
    assert await read_to_eof(reader, CLOSE_BOUND) == b""
    assert server.rejected == {"connection_limit": 1}
    for each in (first_writer, writer):
        each.close()


async def test_a_tls_client_that_never_speaks_rtmp_is_closed_at_the_handshake_timeout(
    server: RTMPServer, first: CertificateFiles
) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", tls_port(server), ssl=first.client_context()
    )
    assert await read_to_eof(reader, CLOSE_BOUND) == b""
    assert server.rejected == {"handshake_timeout": 1}
    writer.close()


async def test_a_tls_client_on_the_plain_port_is_closed(
    server: RTMPServer, first: CertificateFiles
) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError)):
        async with asyncio.timeout(CLOSE_BOUND):
            await asyncio.open_connection("127.0.0.1", server.port, ssl=first.client_context())
    await eventually(lambda: server.connection_count == 0, CLOSE_BOUND)


async def test_a_reload_serves_new_handshakes_with_the_new_certificate(
    server: RTMPServer,
    certificate: ServerCertificate,
    admission: StubAdmission,
    first: CertificateFiles,
    tmp_path: Path,
) -> None:
    before, codes = await RawPublisher.start(tls_port(server), KEY, tls=first.client_context())
    assert codes == ["NetStream.Publish.Start"]
    path = admission.paths[-1]

    (tmp_path / "new").mkdir()
    rotated = make_certificate(tmp_path / "new", "second")
    first.cert.write_bytes(rotated.cert.read_bytes())
    first.key.write_bytes(rotated.key.read_bytes())
    assert certificate.reload()

    after, _ = await RawPublisher.start(tls_port(server), "x" * 20, tls=rotated.client_context())
    assert shown_name(after) == "second"
    after.close()
    # The publisher connected before the reload is still live, on the old certificate.
    assert shown_name(before) == "first"
    assert await before.send(VIDEO, 0, AVC_HEADER)
    await eventually(lambda: path.hub.bytes_in == len(AVC_HEADER))
    assert not path.left.is_set()
    before.close()


async def test_a_failed_reload_keeps_the_certificate_in_use(
    server: RTMPServer,
    certificate: ServerCertificate,
    first: CertificateFiles,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first.cert.write_text("not a certificate\n")
    with caplog.at_level(logging.ERROR, logger="ingest.tls"):
        assert not certificate.reload()
    [record] = caplog.records
    assert "RTMPS certificate not reloaded" in record.getMessage()
    assert "still using the previous one" in record.getMessage()

    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    publisher, codes = await RawPublisher.start(tls_port(server), KEY, tls=context)
    assert codes == ["NetStream.Publish.Start"]
    assert shown_name(publisher) == "first"
    publisher.close()


async def test_a_trusted_proxy_sends_its_header_before_the_tls_handshake(
    servers: ServerFactory, admission: StubAdmission, first: CertificateFiles
) -> None:
    """A TCP proxy in front of the RTMPS port (an NLB with proxy protocol v2) sends the PROXY
    header in clear before the client's ClientHello; the publish is the reported client's."""
    server = await servers(rtmp_proxy_protocol=True, trusted_proxies="127.0.0.1/32")
    publisher, codes = await RawPublisher.start(
        tls_port(server), KEY, tls=first.client_context(), proxy_header=v1("192.0.2.10", 40001)
    )
    assert codes == ["NetStream.Publish.Start"]
    assert admission.paths[0].publisher.client_address == "192.0.2.10:40001"
    assert shown_name(publisher) == "first"
    publisher.close()


async def test_a_header_and_a_client_hello_in_one_segment(
    servers: ServerFactory, first: CertificateFiles
) -> None:
    """The bytes after the header in the same read are the start of the TLS handshake."""
    server = await servers(rtmp_proxy_protocol=True, trusted_proxies="127.0.0.1/32")
    header = b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c" + bytes([192, 0, 2, 10, 127, 0, 0, 1])
    header += b"\x9c\x41\x07\x8f"
    name = await handshake_in_memory(tls_port(server), header, first.client_context())
    assert name == "first"
    await eventually(lambda: server.connection_count == 1)
    assert server.rejected == {}


async def test_a_trusted_proxy_without_a_header_on_the_tls_port_is_refused(
    servers: ServerFactory, first: CertificateFiles
) -> None:
    server = await servers(rtmp_proxy_protocol=True, trusted_proxies="127.0.0.1/32")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        async with asyncio.timeout(CLOSE_BOUND):
            await asyncio.open_connection("127.0.0.1", tls_port(server), ssl=first.client_context())
    await eventually(lambda: server.rejected == {"proxy_header_missing": 1}, CLOSE_BOUND)


async def test_a_header_from_an_untrusted_address_on_the_tls_port_is_refused(
    servers: ServerFactory,
) -> None:
    server = await servers(rtmp_proxy_protocol=True, trusted_proxies="10.0.0.0/8")
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_port(server))
    writer.write(v1("192.0.2.10", 40001))
    assert await read_to_eof(reader, CLOSE_BOUND) == b""
    await eventually(lambda: server.rejected == {"proxy_header_untrusted": 1}, CLOSE_BOUND)
    writer.close()


def v1(host: str, port: int) -> bytes:
    return f"PROXY TCP4 {host} 127.0.0.1 {port} 443\r\n".encode()


async def handshake_in_memory(port: int, header: bytes, context: ssl.SSLContext) -> str:
    """Send ``header`` and a ClientHello in one write, finish the TLS handshake; the common
    name of the certificate the server showed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with contextlib.suppress(ssl.SSLWantReadError):
        client.do_handshake()
    writer.write(header + outgoing.read())
    async with asyncio.timeout(CLOSE_BOUND):
        while True:
            data = await reader.read(65536)
            assert data, "the server closed during the TLS handshake"
            incoming.write(data)
            try:
                client.do_handshake()
            except ssl.SSLWantReadError:
                writer.write(outgoing.read())
                continue
            break
    writer.write(outgoing.read())
    der = client.getpeercert(binary_form=True)
    assert der is not None
    writer.close()
    return peer_common_name(der)
