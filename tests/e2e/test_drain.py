"""Draining a node: ``/readyz`` fails with ``draining`` at once, new publishes are refused with
a clear RTMP error, live sessions end with ``draining`` (not as a publisher error), and the
process exits 0 within its bound, whether SIGTERM or ``liverelay drain`` asked."""

from __future__ import annotations

import asyncio
import json
import signal
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api.keys import DRAIN, PATHS
from api.live.drain import STOP_AFTER_DRAIN_SECONDS, control_socket
from ingest.live import END_MESSAGES
from tests.e2e.conftest import (
    LiveServer,
    Publisher,
    Sources,
    ended,
    push,
    segment_count,
    serving,
    wait_for_playlist,
)
from tests.e2e.rtmp_clients import rtmp
from tests.e2e.serve_process import Service, call, liverelay_command
from tests.e2e.serve_process import service as service
from tests.polling import eventually
from tests.protocol.helpers import ServerOutput, publish_bytes
from tests.rtmp_client import RawPublisher, first_statuses

pytestmark = pytest.mark.e2e

DRAIN_SECONDS = 20
"""``LIVERELAY_DRAIN_SECONDS`` of the subprocess tests."""


async def post_drain(socket_path: Path) -> tuple[int, dict[str, Any]]:
    """``POST /drain`` on a node's control socket, as ``liverelay drain`` does."""
    connector = aiohttp.UnixConnector(path=str(socket_path))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.post("http://liverelay/drain") as response,
    ):
        return response.status, await response.json()


async def refused_publish(port: int, key: str) -> list[dict[str, Any]]:
    """Publish with ``key`` on a new connection; the statuses the server answered with."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(publish_bytes(key))
        return await first_statuses(reader, ServerOutput(expect_handshake=True))
    finally:
        writer.close()


async def sessions_of(live: LiveServer, stream_id: str) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{live.http_url}/v1/livestreams/{stream_id}/sessions", headers=live.headers
        ) as response,
    ):
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return list(body["data"])


async def test_drain_fails_readiness_refuses_publishes_and_ends_sessions(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with serving(tmp_path, sqlite_url) as live:
        live_stream, late_stream = await live.create_stream(), await live.create_stream()
        publisher, codes = await RawPublisher.start(live.rtmp_port, live_stream["streamKey"])
        assert codes == ["NetStream.Publish.Start"]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{live.http_url}/readyz") as ready:
                assert ready.status == 200

            socket_path = control_socket(live.settings)
            # Only the node's user may reach the socket: its directory is private.
            assert stat.S_IMODE(socket_path.parent.stat().st_mode) == 0o700
            status, answer = await post_drain(socket_path)
            assert (status, answer) == (202, {"draining": True, "began": True})
            async with http.get(f"{live.http_url}/readyz") as draining:
                assert draining.status == 503
                assert await draining.json() == {"status": "draining", "checks": {}}

        told = await publisher.statuses_until_closed()
        assert [(s["code"], s["description"]) for s in told] == [
            ("NetStream.Unpublish.Success", END_MESSAGES["draining"])
        ]
        refused = await refused_publish(live.rtmp_port, late_stream["streamKey"])
        assert [(s["code"], s["description"]) for s in refused] == [
            ("NetStream.Publish.Failed", END_MESSAGES["draining"])
        ]
        assert rtmp(live).rejected.get("draining") == 1
        assert live.app[PATHS].get(late_stream["id"]) is None

        await asyncio.wait_for(live.app[DRAIN].finished.wait(), 30)
        assert live.app[PATHS].paths() == ()

        async def ended_draining() -> bool:
            sessions = await sessions_of(live, live_stream["id"])
            return [s["endReason"] for s in sessions] == ["draining"]

        await eventually(ended_draining, 10, interval=0.1, message="no session ended draining")
        assert await sessions_of(live, late_stream["id"]) == []
        # A second request while draining changes nothing.
        assert await post_drain(control_socket(live.settings)) == (
            202,
            {"draining": True, "began": False},
        )


async def drained_subprocess(
    service: Service,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
    drain: str,
) -> None:
    """Serve, publish with ffmpeg, drain by ``drain`` (``sigterm`` or ``command``): the
    process exits 0 in time, the publisher is let go, its session ends ``draining``."""
    service.env["LIVERELAY_DRAIN_SECONDS"] = str(DRAIN_SECONDS)
    await asyncio.to_thread(Path(service.env["LIVERELAY_DATA_DIR"]).mkdir, parents=True)
    await service.start()
    token = json.loads(await service.command("apikey", "create", "--name", "ops"))["token"]
    body = {"name": "t", "latencyMode": "standard"}  # its live window is read from disk
    stream = await call(service, token, "POST", "/v1/livestreams", json=body)
    publisher = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True)
    publishers.append(publisher)
    await wait_for_playlist(stream["downstreamUrl"], lambda t: segment_count(t) >= 2)

    assert service.process is not None
    if drain == "sigterm":
        service.process.send_signal(signal.SIGTERM)
    else:
        answer = json.loads(await service.command("drain"))
        assert answer == {"draining": True, "began": True}
    bound = DRAIN_SECONDS + STOP_AFTER_DRAIN_SECONDS
    code = await asyncio.wait_for(service.process.wait(), bound + 15)  # generous: slow machine
    log = service.log.read_text()
    assert code == 0, log[-3000:]
    assert "draining" in log
    await asyncio.wait_for(publisher.process.wait(), 15)  # the publisher was let go
    data_dir = Path(service.env["LIVERELAY_DATA_DIR"])
    playlist = (data_dir / "live" / stream["id"] / "index.m3u8").read_text()
    assert ended(playlist), "the live playlist was closed with ENDLIST"
    assert not control_socket_of(service).exists()

    await service.start()
    sessions = await call(service, token, "GET", f"/v1/livestreams/{stream['id']}/sessions")
    assert [s["endReason"] for s in sessions["data"]] == ["draining"]


def control_socket_of(service: Service) -> Path:
    return Path(service.env["LIVERELAY_DATA_DIR"]) / "control" / "node.sock"


async def test_sigterm_drains_the_process_and_it_exits_0(
    service: Service,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
) -> None:
    await drained_subprocess(service, ffmpeg_exe, sources, publishers, "sigterm")


async def test_liverelay_drain_drains_the_process_and_it_exits_0(
    service: Service,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
) -> None:
    await drained_subprocess(service, ffmpeg_exe, sources, publishers, "command")


async def test_liverelay_drain_without_a_node_fails_clearly(tmp_path: Path) -> None:
    service = Service(tmp_path / "data")
    process = await asyncio.create_subprocess_exec(
        *liverelay_command("drain"),
        env=service.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert out == b""
    assert b"no node answers on" in err and b"control/node.sock" in err
