"""Faults: a crashed ffmpeg, a broken disk, the database going away, and SIGTERM. In each case
the failure stays where it happened and nothing already recorded is lost."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from api.keys import PATHS
from tests.e2e.conftest import (
    LiveServer,
    Publisher,
    Sources,
    e2e_settings,
    ended,
    fetch,
    free_port,
    has_segment,
    push,
    segment_count,
    start_live_server,
    wait_for_playlist,
)
from tests.e2e.serve_process import Service, call
from tests.e2e.serve_process import service as service
from tests.polling import eventually
from tests.tcp_proxy import TcpProxy
from workers.supervisor import OutputState

pytestmark = pytest.mark.e2e


async def test_killed_hls_ffmpeg_is_restarted_and_the_playlist_continues(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    stream = await live_server.create_stream(latencyMode="standard")
    publisher = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True)
    publishers.append(publisher)
    await wait_for_playlist(stream["downstreamUrl"], lambda t: segment_count(t) >= 2)
    hls = live_server.app[PATHS].get(stream["id"]).outputs.hls  # type: ignore[union-attr]
    process = hls.supervisor.process
    assert process is not None and process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    playlist = await wait_for_playlist(
        stream["downstreamUrl"],
        lambda t: (
            "#EXT-X-DISCONTINUITY" in t and t.split("#EXT-X-DISCONTINUITY")[1].count(".ts") >= 2
        ),
    )
    assert not ended(playlist)
    assert publisher.process.returncode is None, "the publisher was never disconnected"
    status = hls.supervisor.status()
    assert status.restarts == 1 and status.state is OutputState.LIVE
    assert "killed by SIGKILL" in (status.last_error or "")


async def test_unwritable_storage_fails_that_output_only(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    broken = await live_server.create_stream(latencyMode="standard", name="broken disk")
    healthy = await live_server.create_stream(latencyMode="standard", name="healthy")
    for stream in (broken, healthy):
        publishers.append(await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True))
    for stream in (broken, healthy):
        await wait_for_playlist(stream["downstreamUrl"], has_segment)
    live_dir = live_server.settings.live_dir / broken["id"]
    shutil.rmtree(live_dir)
    live_dir.write_text("not a directory any more")  # every write below it now fails
    hls = live_server.app[PATHS].get(broken["id"]).outputs.hls  # type: ignore[union-attr]
    await eventually(lambda: hls.supervisor.state is OutputState.FAILED, within=30)
    assert "cannot write HLS output" in (hls.supervisor.status().last_error or "")
    before = segment_count((await fetch(healthy["downstreamUrl"]))[1].decode())
    await wait_for_playlist(healthy["downstreamUrl"], lambda t: segment_count(t) >= before + 2)
    assert all(p.process.returncode is None for p in publishers), "no publisher was dropped"


@pytest.fixture
async def proxied_postgres(postgresql_url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    proxy = await TcpProxy("127.0.0.1", 5432).start()
    url = postgresql_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    try:
        yield proxy, url
    finally:
        await proxy.close()


async def test_database_outage_fails_fast_keeps_live_streams_and_recovers(
    tmp_path: Path,
    proxied_postgres: tuple[TcpProxy, str],
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
) -> None:
    proxy, database_url = proxied_postgres
    port = free_port()
    # The outage is shorter than two thirds of the lease: the live stream keeps its lease (a
    # longer one ends it with lease_lost, tests/api/cluster/test_keeper.py).
    settings = e2e_settings(tmp_path, database_url, port, lease_seconds=300)
    server, live = await start_live_server(settings, port)
    try:
        on_air = await live.create_stream(latencyMode="standard", name="on air")
        waiting = await live.create_stream(latencyMode="standard", name="waiting")
        publisher = await push(ffmpeg_exe, sources.av, on_air["upstreamUrl"], loop=True)
        publishers.append(publisher)
        await wait_for_playlist(on_air["downstreamUrl"], has_segment)

        proxy.cut("reset")
        started = time.monotonic()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{live.http_url}/v1/livestreams", headers=live.headers) as r:
                assert r.status == 503
                body = await r.json()
        assert body["code"] == "service_unavailable" and time.monotonic() - started < 15
        refused = await push(ffmpeg_exe, sources.av, waiting["upstreamUrl"], realtime=False)
        publishers.append(refused)
        code, _ = await refused.finish(timeout=30)
        assert code != 0, "a publish that cannot be authorized is refused"
        before = segment_count((await fetch(on_air["downstreamUrl"]))[1].decode())
        await wait_for_playlist(on_air["downstreamUrl"], lambda t: segment_count(t) >= before + 2)
        assert publisher.process.returncode is None, "the live stream kept streaming"

        proxy.heal()
        async with aiohttp.ClientSession() as http:

            async def answers() -> bool:
                async with http.get(f"{live.http_url}/v1/livestreams", headers=live.headers) as r:
                    return r.status == 200

            await eventually(
                answers, 10, interval=0.2, message="the API did not recover without a restart"
            )
        again = await push(ffmpeg_exe, sources.av, waiting["upstreamUrl"])
        publishers.append(again)
        await wait_for_playlist(waiting["downstreamUrl"], has_segment)
    finally:
        await server.close()


async def test_sigterm_closes_publishers_playlists_and_recordings(
    service: Service, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    await asyncio.to_thread(Path(service.env["LIVERELAY_DATA_DIR"]).mkdir, parents=True)
    await service.start()
    token = json.loads(await service.command("apikey", "create", "--name", "ops"))["token"]
    stream = await call(
        service,
        token,
        "POST",
        "/v1/livestreams",
        json={"latencyMode": "standard", "name": "t", "record": True},
    )
    publisher = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True)
    publishers.append(publisher)
    await wait_for_playlist(stream["downstreamUrl"], lambda t: segment_count(t) >= 3)

    assert service.process is not None
    service.process.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(service.process.wait(), 30)
    assert code == 0, service.log.read_text()[-3000:]
    await asyncio.wait_for(publisher.process.wait(), 15)  # the publisher was closed
    data_dir = Path(service.env["LIVERELAY_DATA_DIR"])
    playlist = (data_dir / "live" / stream["id"] / "index.m3u8").read_text()
    assert ended(playlist), "the live playlist was closed with ENDLIST"

    await service.start()
    recordings = await call(service, token, "GET", f"/v1/livestreams/{stream['id']}/recordings")
    assert [r["status"] for r in recordings["data"]] == ["ready"]
    assert recordings["data"][0]["duration"] >= 2.0
