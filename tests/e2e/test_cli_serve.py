"""The two commands a new user runs: ``liverelay serve`` and the API tour from the README."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.conftest import (
    Publisher,
    Sources,
    download_and_decode,
    ended,
    free_port,
    has_segment,
    push,
    wait_for_playlist,
)
from tests.polling import eventually

pytestmark = pytest.mark.e2e

LIVERELAY = str(Path(sys.executable).with_name("liverelay"))
"""The console script installed by the README's set-up command."""


async def run_cli(env: dict[str, str], *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        LIVERELAY,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


async def wait_until_ready(url: str, server: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as http:

        async def ready() -> bool:
            assert server.returncode is None, "liverelay serve exited early"
            try:
                async with http.get(url) as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(ready, 20, interval=0.1, message="liverelay serve did not come up")


async def test_serve_with_zero_configuration_tour(
    tmp_path: Path, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    http_port, rtmp_port, metrics_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "LIVERELAY_DATA_DIR": str(tmp_path / "data"),
        "LIVERELAY_HTTP_HOST": "127.0.0.1",
        "LIVERELAY_HTTP_PORT": str(http_port),
        "LIVERELAY_RTMP_HOST": "127.0.0.1",
        "LIVERELAY_RTMP_PORT": str(rtmp_port),
        "LIVERELAY_METRICS_PORT": str(metrics_port),  # the default 9090 may be taken here
    }
    for name in ("LIVERELAY_DATABASE_URL", "LIVERELAY_METRICS_TOKEN"):
        env.pop(name, None)
    server = await asyncio.create_subprocess_exec(
        LIVERELAY,
        "serve",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_until_ready(f"http://127.0.0.1:{http_port}/healthz", server)
        credentials = json.loads(await run_cli(env, "apikey", "create", "--name", "tour"))
        assert set(credentials) == {"apikey", "secret", "userId", "token"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{http_port}/v1/livestreams",
                headers={"Authorization": credentials["token"]},
                json={"name": "tour"},
            ) as response,
        ):
            assert response.status == 201
            stream = await response.json()
        assert stream["upstreamUrl"] == f"rtmp://127.0.0.1:{rtmp_port}/live/{stream['streamKey']}"
        publisher = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"])
        publishers.append(publisher)
        await wait_for_playlist(stream["downstreamUrl"], has_segment)  # played while live
        code, stderr = await publisher.finish()
        assert code == 0, stderr
        playlist = await wait_for_playlist(stream["downstreamUrl"], ended)
        decoded = await download_and_decode(stream["downstreamUrl"], playlist)
        assert decoded.video_codec == "h264" and decoded.duration >= 5.0
        assert (tmp_path / "data" / "liverelay.db").exists()  # the embedded default database
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{http_port}/metrics") as public:
                assert public.status == 404  # not on the public port without a token
            async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as metrics:
                assert metrics.status == 200
                assert "liverelay_http_request_duration_seconds" in await metrics.text()
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGTERM)
        _, stderr_bytes = await asyncio.wait_for(server.communicate(), 30)
    log = stderr_bytes.decode()
    assert stream["streamKey"] not in log, "the stream key leaked into the server log"
    assert server.returncode == 0, log[-2000:]
