"""The rate limit of TLS handshakes on the RTMPS listener (``LIVERELAY_RTMPS_HANDSHAKE_RATE``,
``LIVERELAY_RTMPS_HANDSHAKE_BURST``): an address past it is closed at the accept, before any
TLS byte is answered, without touching other addresses or live publishers. Real TLS over
loopback (``127.0.0.2`` is another client address); the server's clock is a fake, so the
bucket refills only when a test moves it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingest.server import RTMPServer
from tests.fakes import FakeClock, StubAdmission
from tests.polling import eventually
from tests.protocol.helpers import C0C1, VIDEO
from tests.rtmp_client import RawPublisher, read_to_eof
from tests.tls_support import CertificateFiles, RTMPSServers, make_certificate

KEY = "k" * 20
STREAM = "5" * 24
AVC_HEADER = b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f"
CLOSE_BOUND = 10.0
"""How long a test waits for a close; the handshake timeout of these servers is far longer,
so a close within it is the refusal, not the timeout."""
THROTTLED = "tls_handshake_throttled"


@pytest.fixture
def first(tmp_path: Path) -> CertificateFiles:
    return make_certificate(tmp_path, "first")


@pytest.fixture
def admission() -> StubAdmission:
    return StubAdmission({KEY: STREAM})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


ServerFactory = Callable[..., Awaitable[RTMPServer]]


@pytest.fixture
async def servers(
    tmp_path: Path, first: CertificateFiles, admission: StubAdmission, clock: FakeClock
) -> AsyncIterator[ServerFactory]:
    """Starts RTMP servers with RTMPS on, driven by ``clock``; closes them."""
    started = RTMPSServers(
        tmp_path, first, admission=admission, clock=clock, handshake_timeout=60.0
    )
    yield started.start
    await started.close()


@dataclass
class Attempt:
    """One raw TCP connection that sent a ClientHello (after ``header``, if any)."""

    writer: asyncio.StreamWriter
    completed: bool
    """Whether the TLS handshake completed."""
    received: int
    """Bytes the server sent (0: it answered nothing, not even a ServerHello)."""

    def close(self) -> None:
        self.writer.close()


async def handshake(
    server: RTMPServer, context: ssl.SSLContext, *, source: str = "127.0.0.1", header: bytes = b""
) -> Attempt:
    """Connect from ``source`` to the RTMPS port and run a TLS handshake in memory, so that
    what the server answered can be counted; the connection stays open if it completed."""
    assert server.tls_port is not None
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.tls_port, local_addr=(source, 0)
    )
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with contextlib.suppress(ssl.SSLWantReadError):
        client.do_handshake()
    writer.write(header + outgoing.read())
    received = 0
    async with asyncio.timeout(CLOSE_BOUND):
        while data := await reader.read(65536):
            received += len(data)
            incoming.write(data)
            try:
                client.do_handshake()
            except ssl.SSLWantReadError:
                writer.write(outgoing.read())
                continue
            except ssl.SSLError:  # e.g. the client refused the certificate
                break
            writer.write(outgoing.read())
            return Attempt(writer, True, received)
    writer.close()
    return Attempt(writer, False, received)


async def test_a_burst_past_the_limit_is_refused_without_a_handshake(
    servers: ServerFactory, first: CertificateFiles, caplog: pytest.LogCaptureFixture
) -> None:
    server = await servers(rtmps_handshake_burst=3)
    kept = [await handshake(server, first.client_context()) for _ in range(3)]
    assert all(attempt.completed for attempt in kept)
    with caplog.at_level(logging.DEBUG, logger="ingest.server"):
        refused = [await handshake(server, first.client_context()) for _ in range(4)]
    assert [(a.completed, a.received) for a in refused] == [(False, 0)] * 4  # no ServerHello
    assert server.rejected == {THROTTLED: 4}
    assert server.connection_count == 3  # the burst's connections, still open
    lines = [r for r in caplog.records if THROTTLED in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.WARNING] + [logging.DEBUG] * 3
    assert "3 TLS handshakes" in lines[0].getMessage()
    for attempt in kept:
        attempt.close()


async def test_another_address_still_connects(
    servers: ServerFactory, first: CertificateFiles
) -> None:
    server = await servers(rtmps_handshake_burst=1)
    kept = await handshake(server, first.client_context())
    assert kept.completed
    assert not (await handshake(server, first.client_context())).completed
    other = await handshake(server, first.client_context(), source="127.0.0.2")
    assert other.completed
    assert server.rejected == {THROTTLED: 1}
    for attempt in (kept, other):
        attempt.close()


async def test_a_live_publisher_is_unaffected(
    servers: ServerFactory, first: CertificateFiles, admission: StubAdmission
) -> None:
    server = await servers(rtmps_handshake_burst=2)
    assert server.tls_port is not None
    publisher, codes = await RawPublisher.start(server.tls_port, KEY, tls=first.client_context())
    assert codes == ["NetStream.Publish.Start"]
    path = admission.paths[-1]
    kept = await handshake(server, first.client_context())
    assert kept.completed
    for _ in range(5):  # the same address, past its limit
        assert not (await handshake(server, first.client_context())).completed
    assert server.rejected == {THROTTLED: 5}
    assert await publisher.send(VIDEO, 0, AVC_HEADER)
    await eventually(lambda: path.hub.bytes_in == len(AVC_HEADER))
    assert not path.left.is_set()
    kept.close()
    publisher.close()
    await asyncio.wait_for(path.left.wait(), CLOSE_BOUND)


async def test_the_bucket_refills_with_the_clock(
    servers: ServerFactory, first: CertificateFiles, clock: FakeClock
) -> None:
    server = await servers(rtmps_handshake_burst=2, rtmps_handshake_rate=0.5)
    kept = [await handshake(server, first.client_context()) for _ in range(2)]
    assert not (await handshake(server, first.client_context())).completed
    clock.advance(1.0)  # half a token
    assert not (await handshake(server, first.client_context())).completed
    clock.advance(1.0)
    kept.append(await handshake(server, first.client_context()))
    assert all(attempt.completed for attempt in kept)
    assert not (await handshake(server, first.client_context())).completed
    assert server.rejected == {THROTTLED: 3}
    for attempt in kept:
        attempt.close()


async def test_a_failed_handshake_costs_two(servers: ServerFactory) -> None:
    server = await servers(rtmps_handshake_burst=4)
    assert server.tls_port is not None
    for count in (1, 2):  # plain RTMP on the TLS port: a failed handshake
        reader, writer = await asyncio.open_connection("127.0.0.1", server.tls_port)
        writer.write(C0C1)
        await read_to_eof(reader, CLOSE_BOUND)
        writer.close()
        failed = {"tls_handshake_failed": count}
        await eventually(lambda: server.rejected == failed)  # noqa: B023 (awaited at once)
    untrusting = ssl.create_default_context()
    assert (await handshake(server, untrusting)).received == 0
    assert server.rejected == {"tls_handshake_failed": 2, THROTTLED: 1}


async def test_the_address_a_trusted_proxy_reports_is_what_counts(
    servers: ServerFactory, first: CertificateFiles
) -> None:
    """All the connections come from the proxy (127.0.0.1); each client behind it has its own
    bucket, and the proxy's own address none."""
    server = await servers(
        rtmp_proxy_protocol=True, trusted_proxies="127.0.0.1/32", rtmps_handshake_burst=2
    )
    context = first.client_context()
    kept = [await handshake(server, context, header=v1("192.0.2.10", port)) for port in (1, 2)]
    refused = await handshake(server, context, header=v1("192.0.2.10", 3))
    assert (refused.completed, refused.received) == (False, 0)
    kept += [await handshake(server, context, header=v1("192.0.2.11", port)) for port in (4, 5)]
    assert all(attempt.completed for attempt in kept)
    assert server.rejected == {THROTTLED: 1}
    for attempt in kept:
        attempt.close()


async def test_the_plain_rtmp_port_is_not_limited(servers: ServerFactory) -> None:
    server = await servers(rtmps_handshake_burst=1)
    writers = [(await asyncio.open_connection("127.0.0.1", server.port))[1] for _ in range(3)]
    await eventually(lambda: server.connection_count == 3)
    assert server.rejected == {}
    for writer in writers:
        writer.close()


def v1(host: str, port: int) -> bytes:
    return f"PROXY TCP4 {host} 127.0.0.1 {port} 443\r\n".encode()
