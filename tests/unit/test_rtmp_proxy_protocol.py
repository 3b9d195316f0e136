"""The RTMP listener behind a TCP proxy (``LIVERELAY_RTMP_PROXY_PROTOCOL``): a real server on a
loopback port, raw clients that send the PROXY header themselves, and the address grouping of
the per-address limits."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from config.settings import Settings, SettingsError
from ingest.client_address import TrustedProxies, address_group
from ingest.limits import AddressConnections, AuthFailureThrottle
from ingest.server import RTMPServer
from tests.fakes import FakeClock, StubAdmission
from tests.polling import eventually
from tests.protocol.helpers import C0C1, ServerOutput, publish_bytes
from tests.rtmp_client import first_statuses, read_to_eof

KEY = "k" * 20
STREAM = "5" * 24
SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(host: str, port: int) -> bytes:
    family, destination = ("TCP6", "::1") if ":" in host else ("TCP4", "127.0.0.1")
    return f"PROXY {family} {host} {destination} {port} 1935\r\n".encode()


def v2_ipv4(host: str, port: int, tlvs: bytes = b"") -> bytes:
    block = bytes(int(part) for part in host.split(".")) + bytes([127, 0, 0, 1])
    block += struct.pack("!HH", port, 1935) + tlvs
    return SIG + b"\x21\x11" + struct.pack("!H", len(block)) + block


V2_LOCAL = SIG + b"\x20\x00\x00\x00"

ServerFactory = Callable[..., AsyncIterator[RTMPServer]]


@pytest.fixture
def admission() -> StubAdmission:
    return StubAdmission({KEY: STREAM})


@pytest.fixture
async def servers(tmp_path: Path, admission: StubAdmission) -> AsyncIterator[ServerFactory]:
    """Starts RTMP servers with the PROXY protocol on and the given settings; closes them."""
    started: list[RTMPServer] = []

    async def start(**overrides: object) -> RTMPServer:
        values: dict[str, object] = {
            "data_dir": tmp_path,
            "rtmp_host": "127.0.0.1",
            "rtmp_port": 0,
            "rtmp_proxy_protocol": True,
            "trusted_proxies": "127.0.0.0/8",
        }
        values.update(overrides)
        server = RTMPServer(Settings(**values), admission=admission, clock=FakeClock())  # type: ignore[arg-type]
        await server.start()
        started.append(server)
        return server

    yield start  # type: ignore[misc]
    for server in started:
        await server.close()


async def publish(port: int, *pieces: bytes) -> tuple[list[str], asyncio.StreamWriter]:
    """Send ``pieces`` (each written and drained on its own); the status codes answered (the
    description instead for an error)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for piece in pieces:
        writer.write(piece)
        await writer.drain()
    answers = await first_statuses(reader, ServerOutput(expect_handshake=True))
    return [s["code"] if s["level"] != "error" else s["description"] for s in answers], writer


async def refused(port: int, data: bytes) -> bytes:
    """Send ``data``; what the server sent before it closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    answer = await read_to_eof(reader)
    writer.close()
    return answer


# -- on a real listener -----------------------------------------------------------------------


async def test_a_v1_header_and_the_rtmp_handshake_in_one_write(
    servers: ServerFactory, admission: StubAdmission
) -> None:
    server = await servers()
    codes, writer = await publish(server.port, v1("192.0.2.10", 40001) + publish_bytes(KEY))
    assert codes == ["NetStream.Publish.Start"]
    assert admission.paths[0].publisher.client_address == "192.0.2.10:40001"
    writer.close()
    assert server.rejected == {}


async def test_a_v2_header_split_over_several_writes(
    servers: ServerFactory, admission: StubAdmission
) -> None:
    server = await servers()
    header = v2_ipv4("198.51.100.20", 5000, tlvs=b"\x05\x00\x03abc")
    pieces = [header[:5], header[5:14], header[14:20], header[20:] + C0C1[:3]]
    codes, writer = await publish(server.port, *pieces, publish_bytes(KEY)[3:])
    assert codes == ["NetStream.Publish.Start"]
    assert admission.paths[0].publisher.client_address == "198.51.100.20:5000"
    writer.close()


async def test_a_v1_tcp6_client_is_reported_as_it_is(
    servers: ServerFactory, admission: StubAdmission
) -> None:
    server = await servers()
    codes, writer = await publish(server.port, v1("2001:db8::7", 6000) + publish_bytes(KEY))
    assert codes == ["NetStream.Publish.Start"]
    assert admission.paths[0].publisher.client_address == "2001:db8::7:6000"
    writer.close()


async def test_a_local_header_keeps_the_proxys_own_address(
    servers: ServerFactory, admission: StubAdmission
) -> None:
    server = await servers()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(V2_LOCAL + publish_bytes(KEY))
    [status] = await first_statuses(reader)
    assert status["code"] == "NetStream.Publish.Start"
    host, port = writer.get_extra_info("sockname")[:2]
    assert admission.paths[0].publisher.client_address == f"{host}:{port}"
    writer.close()


async def test_a_proxys_health_check_is_not_a_refusal(servers: ServerFactory) -> None:
    server = await servers()
    for data in (b"", V2_LOCAL, b"PROXY TCP4 192.0"):
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(data)
        await writer.drain()
        writer.close()
    await eventually(lambda: server.connection_count == 0)
    assert server.rejected == {}


async def test_a_trusted_proxy_without_a_header_is_refused(servers: ServerFactory) -> None:
    server = await servers()
    assert await refused(server.port, publish_bytes(KEY)) == b""  # not even a handshake
    assert server.rejected == {"proxy_header_missing": 1}


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY TCP4 192.0.2.1 127.0.0.1 1 2\n",
        b"PROXY TCP4 " + b"1" * 200,
        SIG + b"\x21\x11\xff\xff",
    ],
    ids=["no-crlf", "too-long-v1", "too-long-v2"],
)
async def test_a_malformed_header_is_refused(servers: ServerFactory, header: bytes) -> None:
    server = await servers()
    assert await refused(server.port, header + publish_bytes(KEY)) == b""
    assert server.rejected == {"proxy_header_invalid": 1}


async def test_a_header_that_does_not_come_in_time_is_refused(servers: ServerFactory) -> None:
    server = await servers(rtmp_handshake_timeout=0.2)
    assert await refused(server.port, b"PROXY TCP4 192.0.2.1") == b""
    assert server.rejected == {"handshake_timeout": 1}


async def test_a_header_from_an_untrusted_address_is_refused(
    servers: ServerFactory, admission: StubAdmission
) -> None:
    server = await servers(trusted_proxies="10.0.0.0/8")
    for header in (v1("192.0.2.1", 1), v2_ipv4("192.0.2.1", 1)):
        assert await refused(server.port, header + publish_bytes(KEY)) == b""
    assert server.rejected == {"proxy_header_untrusted": 2}
    assert admission.asked == []


async def test_an_untrusted_address_without_a_header_is_served_as_itself(
    servers: ServerFactory, admission: StubAdmission
) -> None:
    server = await servers(trusted_proxies="10.0.0.0/8, 2001:db8::/32")
    codes, writer = await publish(server.port, publish_bytes(KEY))
    assert codes == ["NetStream.Publish.Start"]
    host, port = writer.get_extra_info("sockname")[:2]
    assert admission.paths[0].publisher.client_address == f"{host}:{port}"
    writer.close()


async def test_the_throttle_counts_the_reported_address(
    servers: ServerFactory, admission: StubAdmission
) -> None:
    server = await servers(rtmp_auth_failures_per_minute=2)
    for _ in range(2):
        codes, writer = await publish(server.port, v1("192.0.2.1", 1) + publish_bytes("bad"))
        assert codes == ["unknown stream key"]
        writer.close()
    codes, writer = await publish(server.port, v1("192.0.2.1", 2) + publish_bytes(KEY))
    assert codes == ["Too many refused stream keys; try again later."]  # refused unchecked
    writer.close()
    codes, writer = await publish(server.port, v1("192.0.2.2", 3) + publish_bytes(KEY))
    assert codes == ["NetStream.Publish.Start"]  # another client behind the same proxy
    writer.close()
    assert server.rejected == {"bad_key": 2, "auth_throttled": 1}
    assert admission.asked == ["bad", "bad", KEY]


async def test_the_address_cap_counts_the_reported_address(
    servers: ServerFactory, admission: StubAdmission
) -> None:
    server = await servers(rtmp_max_connections_per_address=1)
    held_reader, held = await asyncio.open_connection("127.0.0.1", server.port)
    held.write(v1("192.0.2.1", 1) + C0C1)  # stays in the handshake: counted
    await held_reader.readexactly(1 + 1536)
    assert await refused(server.port, v1("192.0.2.1", 2) + C0C1) == b""
    assert server.rejected == {"address_limit": 1}
    codes, writer = await publish(server.port, v1("192.0.2.2", 3) + publish_bytes(KEY))
    assert codes == ["NetStream.Publish.Start"]
    held.close()
    writer.close()


# -- settings ---------------------------------------------------------------------------------


def test_the_proxy_protocol_needs_trusted_proxies() -> None:
    assert not Settings().rtmp_proxy_protocol
    with pytest.raises(SettingsError, match="needs LIVERELAY_TRUSTED_PROXIES"):
        Settings(rtmp_proxy_protocol=True)
    settings = Settings.from_env(
        {
            "LIVERELAY_RTMP_PROXY_PROTOCOL": "true",
            "LIVERELAY_TRUSTED_PROXIES": " 10.0.0.0/8,192.0.2.7 ,, 2001:db8::/32",
        }
    )
    assert [str(n) for n in settings.trusted_proxy_networks] == [
        "10.0.0.0/8",
        "192.0.2.7/32",
        "2001:db8::/32",
    ]


@pytest.mark.parametrize("value", ["10.0.0.1/8", "example.com", "10.0.0.0/33"])
def test_trusted_proxies_refuse_what_is_not_a_network(value: str) -> None:
    with pytest.raises(SettingsError, match=f"LIVERELAY_TRUSTED_PROXIES: '{value}'"):
        Settings(trusted_proxies=value)


def test_trusted_proxies_match_mapped_and_scoped_addresses() -> None:
    proxies = TrustedProxies(
        Settings(trusted_proxies="10.0.0.0/8,fe80::/10").trusted_proxy_networks
    )
    assert proxies.trusts("10.1.2.3") and proxies.trusts("::ffff:10.1.2.3")
    assert proxies.trusts("fe80::1%eth0")
    assert not proxies.trusts("11.0.0.1") and not proxies.trusts("not-an-address")


# -- IPv6 per /64 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "group"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("unix-socket", "unix-socket"),
    ],
)
def test_address_groups(host: str, group: str) -> None:
    assert address_group(host) == group


def test_the_address_cap_counts_ipv6_per_64_and_mapped_ipv4_as_ipv4() -> None:
    limit = AddressConnections(2)
    assert limit.acquire("2001:db8:1:2::1") and limit.acquire("2001:db8:1:2::ffff")
    assert not limit.acquire("2001:db8:1:2:abcd::1")  # same /64
    assert limit.acquire("2001:db8:1:3::1")  # the next /64
    assert limit.open("2001:db8:1:2::99") == 2
    limit.release("2001:db8:1:2::ffff")
    assert limit.acquire("2001:db8:1:2::5")
    assert limit.acquire("192.0.2.1") and limit.acquire("::ffff:192.0.2.1")
    assert not limit.acquire("192.0.2.1")
    assert limit.open("::ffff:192.0.2.1") == 2


def test_the_throttle_counts_ipv6_per_64_and_mapped_ipv4_as_ipv4() -> None:
    throttle = AuthFailureThrottle(2, clock=FakeClock())
    throttle.record_failure("2001:db8:1:2::1")
    assert throttle.record_failure("2001:db8:1:2::2")
    assert throttle.blocked("2001:db8:1:2:ffff::9")
    assert not throttle.blocked("2001:db8:1:3::1")
    throttle.record_failure("::ffff:192.0.2.1")
    assert throttle.record_failure("192.0.2.1")
    assert throttle.blocked("::ffff:192.0.2.1")
    assert len(throttle) == 2
