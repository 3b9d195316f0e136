"""The HTTP/2 + TLS front of ``deploy/nginx/liverelay-http2.conf``: Debian's nginx, started by
the test with that file (only its addresses, certificate and cache directory swapped for the
test's) and a self-signed certificate made here, answers a low-latency blocking playlist
reload over HTTP/2, and serves the part it names with a cache in front of liverelay."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    LiveServer,
    Publisher,
    Sources,
    free_port,
    push,
    wait_for_playlist,
)
from tests.llhls_support import check_conformance, parse
from tests.proxy_process import executable_or_fail, running_nginx
from tests.tls_support import make_certificate

pytestmark = pytest.mark.e2e

CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "liverelay-http2.conf"


def proxy_config(shipped: str, *, directory: Path, upstream: int, port: int) -> str:
    """The shipped server configuration with the test's addresses, certificate and paths."""
    certificate = make_certificate(directory, "127.0.0.1")
    swaps = {
        "server 127.0.0.1:8080;": f"server 127.0.0.1:{upstream};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{port} ssl http2;",
        "listen [::]:443 ssl http2;": "",
        "/etc/ssl/certs/live.example.com.pem": str(certificate.cert),
        "/etc/ssl/private/live.example.com.key": str(certificate.key),
        "/var/cache/nginx/liverelay": str(directory / "cache"),
    }
    for old, new in swaps.items():
        assert old in shipped, f"the shipped configuration no longer has {old!r}"
        shipped = shipped.replace(old, new)
    (directory / "liverelay.conf").write_text(shipped)
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers may write the temp paths
    return (
        f"{user}worker_processes 1;\npid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'} warn;\nevents {{ worker_connections 256; }}\n"
        "http {\n"
        f"    access_log {directory / 'access.log'};\n"
        f"    client_body_temp_path {directory / 'client_body'};\n"
        f"    proxy_temp_path {directory / 'proxy'};\n"
        f"    fastcgi_temp_path {directory / 'fastcgi'};\n"
        f"    uwsgi_temp_path {directory / 'uwsgi'};\n"
        f"    scgi_temp_path {directory / 'scgi'};\n"
        f"    include {directory / 'liverelay.conf'};\n"
        "}\n"
    )


@dataclass(frozen=True)
class Proxy:
    base: str
    directory: Path


@pytest.fixture
async def proxy(live_server: LiveServer, tmp_path: Path) -> AsyncIterator[Proxy]:
    """nginx as this test's own process (its own prefix and pid file), killed by its PID."""
    nginx = executable_or_fail("nginx", "nginx")
    directory = tmp_path / "nginx"
    directory.mkdir()
    port = free_port()
    upstream = live_server.settings.http_port
    conf = directory / "nginx.conf"
    conf.write_text(
        proxy_config(CONF.read_text(), directory=directory, upstream=upstream, port=port)
    )
    async with running_nginx(nginx, directory, conf, port):
        yield Proxy(f"https://127.0.0.1:{port}", directory)


async def curl_http2(url: str, body: Path) -> tuple[str, str, str]:
    """``curl --http2 -k``: (HTTP version, status, the Cache-Control header)."""
    process = await asyncio.create_subprocess_exec(
        "curl", "--http2", "-k", "-sS", "--max-time", "20", "-o", str(body), "-D", "-",
        "-w", "%{http_version} %{http_code}", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    version, status = lines[-1].split()
    cache = next(
        (
            line.split(":", 1)[1].strip()
            for line in lines
            if line.lower().startswith("cache-control:")
        ),
        "",
    )
    return version, status, cache


async def test_a_blocking_reload_is_answered_over_http2_through_nginx(
    proxy: Proxy,
    live_server: LiveServer,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
    tmp_path: Path,
) -> None:
    stream = await live_server.create_stream(latencyMode="low")
    publishers.append(await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True))
    direct = stream["downstreamUrl"]
    text = await wait_for_playlist(
        direct, lambda t: any(s.uri is not None for s in parse(t).segments)
    )
    playlist = parse(text)
    last = playlist.segments[-1]
    msn, part = (last.msn + 1, 0) if last.uri is not None else (last.msn, len(last.parts))
    path = direct.split("://", 1)[1].split("/", 1)[1]
    url = f"{proxy.base}/{path}?_HLS_msn={msn}&_HLS_part={part}"

    body = tmp_path / "reload.m3u8"
    version, status, cache = await curl_http2(url, body)
    assert (version, status) == ("2", "200")
    assert cache == "no-cache"
    after = check_conformance(body.read_text())
    held = [s for s in after.segments if s.msn == msn]
    assert held and (held[0].uri is not None or len(held[0].parts) > part), (
        "answered once the part existed"
    )

    # The newest part, over HTTP/2 as well, from liverelay and then from the proxy's cache.
    newest = after.segments[-1].parts[-1] if after.segments[-1].parts else None
    assert newest is not None
    part_url = f"{proxy.base}/{path.rsplit('/', 1)[0]}/{newest[1]}"
    version, status, _ = await curl_http2(part_url, tmp_path / "part.m4s")
    assert (version, status) == ("2", "200")
    assert (tmp_path / "part.m4s").stat().st_size > 0
