"""RTMP ingest behind ``deploy/haproxy/liverelay-rtmp.cfg``: Debian's HAProxy, started by the
test with that file (only the addresses swapped for loopback ones), carries a real ffmpeg
publish to liverelay with a PROXY v2 header, and the session's ``clientAddress`` is ffmpeg's
own address and port, not HAProxy's; over RTMP, and over RTMPS passed through to liverelay's
RTMPS port (the header before the TLS handshake).

On loopback, HAProxy connects to liverelay from 127.0.0.2, the one trusted proxy; ffmpeg and the
direct clients connect from 127.0.0.1. A connection from the proxy's address without a header
and a header from another address are both refused."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api.keys import RTMP_SERVER
from tests.e2e.conftest import LiveServer, Publisher, Sources, free_port, push, serving
from tests.polling import eventually
from tests.protocol.helpers import publish_bytes
from tests.proxy_process import executable_or_fail, running
from tests.rtmp_client import read_to_eof
from tests.tls_support import CertificateFiles, make_certificate

pytestmark = pytest.mark.e2e

CONF = Path(__file__).resolve().parents[2] / "deploy" / "haproxy" / "liverelay-rtmp.cfg"
PROXY_SOURCE = "127.0.0.2"
"""The address HAProxy connects to liverelay from (a trusted proxy)."""


def proxy_config(shipped: str, *, ports: tuple[int, int], upstreams: tuple[int, int]) -> str:
    """The shipped file listening on loopback ``ports`` (RTMP, RTMPS) with one node, liverelay
    at ``upstreams``, reached from :data:`PROXY_SOURCE`."""
    swaps = {
        "bind :1935": f"bind 127.0.0.1:{ports[0]}",
        "bind :1936": f"bind 127.0.0.1:{ports[1]}",
        "server node1 10.0.0.11:1935 send-proxy-v2": (
            f"server node1 127.0.0.1:{upstreams[0]} source {PROXY_SOURCE} send-proxy-v2"
        ),
        "server node1 10.0.0.11:1936 send-proxy-v2": (
            f"server node1 127.0.0.1:{upstreams[1]} source {PROXY_SOURCE} send-proxy-v2"
        ),
        "check-send-proxy inter 5s\n    server node2": "check-send-proxy inter 100ms\n#",
    }
    for old, new in swaps.items():
        assert old in shipped, f"the shipped configuration no longer has {old!r}"
        shipped = shipped.replace(old, new)
    return shipped


@pytest.fixture
def certificate(tmp_path: Path) -> CertificateFiles:
    (tmp_path / "tls").mkdir()
    return make_certificate(tmp_path / "tls", "liverelay")


@pytest.fixture
async def live(
    tmp_path: Path, sqlite_url: str, certificate: CertificateFiles
) -> AsyncIterator[LiveServer]:
    async with serving(
        tmp_path,
        sqlite_url,
        rtmp_proxy_protocol=True,
        trusted_proxies=f"{PROXY_SOURCE}/32",
        rtmps_port=0,
        tls_cert_file=str(certificate.cert),
        tls_key_file=str(certificate.key),
    ) as live:
        yield live


@pytest.fixture
async def haproxy_ports(live: LiveServer, tmp_path: Path) -> AsyncIterator[tuple[int, int]]:
    """HAProxy in the foreground as this test's own process, stopped by its PID; its RTMP and
    RTMPS ports."""
    haproxy = executable_or_fail("haproxy", "haproxy")
    directory = tmp_path / "haproxy"
    directory.mkdir()
    ports = (free_port(), free_port())
    (directory / "global.cfg").write_text("global\n    maxconn 256\n")
    conf = directory / "liverelay-rtmp.cfg"
    tls_port = live.app[RTMP_SERVER].tls_port
    assert tls_port is not None
    upstreams = (live.rtmp_port, tls_port)
    conf.write_text(proxy_config(CONF.read_text(), ports=ports, upstreams=upstreams))
    argv = [haproxy, "-f", str(directory / "global.cfg"), "-f", str(conf)]
    async with running(
        argv,
        check=["-c"],
        foreground=["-db"],
        ports=ports,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    ):
        yield ports


async def current_session(live: LiveServer, stream_id: str) -> dict[str, Any] | None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{live.http_url}/v1/livestreams/{stream_id}", headers=live.headers) as response,
    ):
        assert response.status == 200
        session: dict[str, Any] | None = (await response.json())["currentSession"]
        return session


def client_ports(pid: int, remote_port: int) -> set[int]:
    """The local ports of process ``pid``'s TCP connections to 127.0.0.1:``remote_port``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if inode in inodes and remote == f"0100007F:{remote_port:04X}":
            ports.add(int(local.split(":")[1], 16))
    return ports


async def direct(live: LiveServer, data: bytes, *, local_host: str) -> bytes:
    """Connect to liverelay's RTMP port from ``local_host``, send ``data``; what it answered
    before it closed."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", live.rtmp_port, local_addr=(local_host, 0)
    )
    writer.write(data)
    answer = await read_to_eof(reader)
    writer.close()
    return answer


async def test_a_publish_through_haproxy_has_the_clients_address(
    live: LiveServer,
    haproxy_ports: tuple[int, int],
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="ingest.server")
    stream = await live.create_stream()
    key = stream["streamKey"]
    haproxy_port = haproxy_ports[0]
    url = f"rtmp://127.0.0.1:{haproxy_port}/live/{key}"
    publisher = await push(ffmpeg_exe, sources.av, url, loop=True)
    publishers.append(publisher)

    session = await eventually(
        lambda: current_session(live, stream["id"]), 30, interval=0.2, message="never live"
    )
    host, port = session["clientAddress"].rsplit(":", 1)
    assert host == "127.0.0.1"  # not the proxy's 127.0.0.2
    assert int(port) in client_ports(publisher.process.pid, haproxy_port)

    rtmp = live.app[RTMP_SERVER]
    # The trusted proxy's address without a header, and a header from another address.
    assert await direct(live, publish_bytes(key), local_host=PROXY_SOURCE) == b""
    forged = b"PROXY TCP4 203.0.113.9 127.0.0.1 5000 1935\r\n" + publish_bytes(key)
    assert await direct(live, forged, local_host="127.0.0.1") == b""
    assert rtmp.rejected == {"proxy_header_missing": 1, "proxy_header_untrusted": 1}
    # HAProxy's health checks send a LOCAL header and close: served as the proxy, not refused.
    check = f"carries {PROXY_SOURCE}:"
    await eventually(lambda: any(check in r.getMessage() for r in caplog.records), 10)
    assert any(r.getMessage().endswith("(PROXY v2 local)") for r in caplog.records)
    assert rtmp.rejected == {"proxy_header_missing": 1, "proxy_header_untrusted": 1}
    after = await current_session(live, stream["id"])  # still live, untouched
    assert after is not None
    assert (after["id"], after["clientAddress"]) == (session["id"], session["clientAddress"])


async def test_rtmps_passed_through_haproxy_has_the_clients_address(
    live: LiveServer,
    haproxy_ports: tuple[int, int],
    certificate: CertificateFiles,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
) -> None:
    """HAProxy sends the PROXY header, then the encoder's TLS bytes, to the RTMPS port; its
    health checks there (a LOCAL header, then a close) are not failed handshakes."""
    stream = await live.create_stream()
    tls_port = haproxy_ports[1]
    url = f"rtmps://127.0.0.1:{tls_port}/live/{stream['streamKey']}"
    verify = ("-tls_verify", "1", "-ca_file", str(certificate.cert))
    publisher = await push(ffmpeg_exe, sources.av, url, loop=True, output_options=verify)
    publishers.append(publisher)

    session = await eventually(
        lambda: current_session(live, stream["id"]), 30, interval=0.2, message="never live"
    )
    host, port = session["clientAddress"].rsplit(":", 1)
    assert host == "127.0.0.1"  # not the proxy's 127.0.0.2
    assert int(port) in client_ports(publisher.process.pid, tls_port)
    assert live.app[RTMP_SERVER].rejected == {}
