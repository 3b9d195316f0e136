"""The RTMPS listener of :class:`~ingest.server.RTMPServer`: RTMP over TLS on its own port,
with the same rules as the plain one, a certificate reloaded for new handshakes only, and
clients of the wrong kind closed within the handshake timeout. Real TLS over loopback; the
live paths are stubbed (:class:`~tests.fakes.StubAdmission`)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from config.settings import Settings
from ingest.server import RTMPServer
from ingest.tls import ServerCertificate
from tests.fakes import FakeClock, StubAdmission
from tests.polling import eventually
from tests.protocol.helpers import C0C1, VIDEO
from tests.rtmp_client import RawPublisher, read_to_eof
from tests.tls_support import CertificateFiles, make_certificate, peer_common_name

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


@pytest.fixture
async def server(
    tmp_path: Path,
    first: CertificateFiles,
    certificate: ServerCertificate,
    admission: StubAdmission,
) -> AsyncIterator[RTMPServer]:
    settings = Settings(
        data_dir=tmp_path,
        rtmp_host="127.0.0.1",
        rtmp_port=0,
        rtmps_port=0,
        tls_cert_file=str(first.cert),
        tls_key_file=str(first.key),
        rtmp_handshake_timeout=HANDSHAKE_SECONDS,
    )
    server = RTMPServer(settings, admission=admission, clock=FakeClock(), certificate=certificate)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


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


async def test_a_plain_rtmp_client_on_the_tls_port_is_closed(server: RTMPServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_port(server))
    writer.write(C0C1)
    assert await read_to_eof(reader, CLOSE_BOUND) == b""  # no RTMP answer, only the close
    writer.close()


async def test_a_silent_client_on_the_tls_port_is_closed_at_the_handshake_timeout(
    server: RTMPServer,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_port(server))
    assert await read_to_eof(reader, CLOSE_BOUND) == b""
    writer.close()


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


async def test_a_trusted_proxy_address_publishes_over_tls_without_a_proxy_header(
    tmp_path: Path,
    first: CertificateFiles,
    certificate: ServerCertificate,
    admission: StubAdmission,
) -> None:
    """The PROXY header is read on the plain port only: on the TLS port a connection from a
    trusted proxy address is RTMP over TLS from its first byte, as from anyone else."""
    settings = Settings(
        data_dir=tmp_path,
        rtmp_host="127.0.0.1",
        rtmp_port=0,
        rtmps_port=0,
        tls_cert_file=str(first.cert),
        tls_key_file=str(first.key),
        rtmp_handshake_timeout=HANDSHAKE_SECONDS,
        rtmp_proxy_protocol=True,
        trusted_proxies="127.0.0.1/32",
    )
    server = RTMPServer(settings, admission=admission, clock=FakeClock(), certificate=certificate)
    await server.start()
    try:
        publisher, codes = await RawPublisher.start(
            tls_port(server), KEY, tls=first.client_context()
        )
        assert codes == ["NetStream.Publish.Start"]
        publisher.close()
    finally:
        await server.close()
