"""RTMP ingest behind ``deploy/nginx/liverelay-rtmp-stream.conf``: Debian's nginx with its
``stream`` module, started by the test with that file (only the addresses swapped for loopback
ones), carries a raw RTMP publish to the RTMP listener with a PROXY v1 header, and the
publisher's address is the client's own address and port. nginx connects from 127.0.0.2, the
one trusted proxy; the client from 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from config.settings import Settings
from ingest.server import RTMPServer
from tests.e2e.conftest import free_port
from tests.fakes import FakeClock, StubAdmission
from tests.protocol.helpers import publish_bytes
from tests.proxy_process import executable_or_fail, missing, running_nginx
from tests.rtmp_client import first_statuses

pytestmark = pytest.mark.e2e

CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "liverelay-rtmp-stream.conf"
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
KEY = "k" * 20


def stream_module_or_fail() -> Path:
    if not STREAM_MODULE.exists():
        missing("nginx's stream module not found (apt-get install libnginx-mod-stream)")
    return STREAM_MODULE


def proxy_config(shipped: str, *, port: int, upstream: int) -> str:
    swaps = {
        "server 10.0.0.11:1935;": f"server 127.0.0.1:{upstream};",
        "        server 10.0.0.12:1935;\n": "",
        "listen 1935;": f"listen 127.0.0.1:{port};",
        "proxy_protocol on;": "proxy_protocol on;\n        proxy_bind 127.0.0.2;",
    }
    for old, new in swaps.items():
        assert old in shipped, f"the shipped configuration no longer has {old!r}"
        shipped = shipped.replace(old, new)
    return shipped


@pytest.fixture
async def rtmp(tmp_path: Path) -> AsyncIterator[tuple[RTMPServer, StubAdmission]]:
    admission = StubAdmission({KEY: "5" * 24})
    settings = Settings(
        data_dir=tmp_path,
        rtmp_host="127.0.0.1",
        rtmp_port=0,
        rtmp_proxy_protocol=True,
        trusted_proxies="127.0.0.2/32",
    )
    server = RTMPServer(settings, admission=admission, clock=FakeClock())
    await server.start()
    try:
        yield server, admission
    finally:
        await server.close()


@pytest.fixture
async def nginx_port(rtmp: tuple[RTMPServer, StubAdmission], tmp_path: Path) -> AsyncIterator[int]:
    """nginx as this test's own process (its own prefix and pid file), stopped by its PID."""
    nginx, module = executable_or_fail("nginx", "nginx"), stream_module_or_fail()
    directory = tmp_path / "nginx"
    directory.mkdir()
    port = free_port()
    (directory / "liverelay-rtmp.conf").write_text(
        proxy_config(CONF.read_text(), port=port, upstream=rtmp[0].port)
    )
    conf = directory / "nginx.conf"
    conf.write_text(
        f"load_module {module};\nworker_processes 1;\npid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'} warn;\nevents {{ worker_connections 64; }}\n"
        f"include {directory / 'liverelay-rtmp.conf'};\n"
    )
    async with running_nginx(nginx, directory, conf, port):
        yield port


async def test_a_publish_through_nginx_stream_has_the_clients_address(
    rtmp: tuple[RTMPServer, StubAdmission], nginx_port: int
) -> None:
    server, admission = rtmp
    reader, writer = await asyncio.open_connection("127.0.0.1", nginx_port)
    writer.write(publish_bytes(KEY))
    [status] = await first_statuses(reader)
    assert status["code"] == "NetStream.Publish.Start"
    host, port = writer.get_extra_info("sockname")[:2]
    assert admission.paths[0].publisher.client_address == f"{host}:{port}"
    writer.close()
    assert server.rejected == {}
