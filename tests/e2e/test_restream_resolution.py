"""Restream target names with real ffmpeg: liverelay resolves and judges the name right before
every start, so a name that resolves to loopback never reaches it, and for ``rtmp://`` ffmpeg is
handed the checked address with the name's tcUrl, which the target cannot tell apart from
ffmpeg resolving the name itself."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import CountingListener
from tests.e2e.conftest import (
    LiveServer,
    Publisher,
    Sources,
    has_segment,
    push,
    serving,
    wait_for_playlist,
)
from tests.e2e.outputs import Connected, ConnectRecorder, connect_recorder, wait_for_api
from tests.polling import eventually
from workers.argv import restream_argv
from workers.egress import resolve_addresses
from workers.restream_target import plan_connection

pytestmark = pytest.mark.e2e

REFUSED = "target host resolves to a private address"


def loopback_name() -> str:
    """This machine's host name, when the system resolver maps it to loopback only (it is not
    ``localhost``, so no name rule catches it: only resolving it does)."""
    name = socket.gethostname()
    try:
        infos = socket.getaddrinfo(name, 1935, type=socket.SOCK_STREAM)
    except OSError:
        pytest.skip(f"host name {name!r} does not resolve")
    if not all(info[4][0] in ("127.0.0.1", "::1") for info in infos):
        pytest.skip(f"host name {name!r} does not resolve to loopback only")
    return name


@pytest.fixture
async def strict_server(tmp_path: Path, sqlite_url: str) -> AsyncIterator[LiveServer]:
    """The service with private targets refused (the default)."""
    overrides = {"allow_private_targets": False, "output_backoff_max_seconds": 0.5}
    async with serving(tmp_path, sqlite_url, **overrides) as live:
        yield live


@pytest.fixture
async def private_server(tmp_path: Path, sqlite_url: str) -> AsyncIterator[LiveServer]:
    """The service with private (loopback) targets allowed."""
    overrides = {"allow_private_targets": True, "output_backoff_max_seconds": 0.5}
    async with serving(tmp_path, sqlite_url, **overrides) as live:
        yield live


async def test_a_name_that_resolves_to_loopback_never_reaches_it(
    strict_server: LiveServer,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
    counting_listener: CountingListener,
) -> None:
    live = strict_server
    name = loopback_name()
    url = f"rtmp://{name}:{counting_listener.port}/live"
    stream = await live.create_stream(restream=[{"url": url, "streamKey": "k-ssrf"}])
    publishers.append(await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True))
    await wait_for_playlist(stream["downstreamUrl"], has_segment)

    def refused_twice(body: dict) -> bool:
        [target] = body["restream"]
        return target["retries"] >= 2 and target["lastError"] == REFUSED

    body = await wait_for_api(live, f"/v1/livestreams/{stream['id']}", refused_twice)
    assert body["restream"][0]["status"] in ("retrying", "connecting")
    assert counting_listener.connections == 0
    await wait_for_playlist(stream["downstreamUrl"], has_segment)  # the live HLS is unaffected


async def test_rtmp_targets_get_the_checked_address_and_the_names_tc_url(
    private_server: LiveServer,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="workers.process")
    live = private_server
    async with connect_recorder() as recorder:
        port = recorder.port
        url = f"rtmp://localhost:{port}/live"
        stream = await live.create_stream(restream=[{"url": url, "streamKey": "key-1"}])
        publishers.append(await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True))
        await eventually(lambda: any(s.publish_name for s in recorder.seen), within=30)

    tc_url = f"rtmp://localhost:{port}/live"
    assert recorder.seen[0] == Connected("live", tc_url, "key-1")
    starts = [r.getMessage() for r in caplog.records if r.name == "workers.process"]
    [started] = [message for message in starts if "restream" in message][:1]
    assert f"-rtmp_tcurl {tc_url} 'rtmp://127.0.0.1:{port}/live/***'" in started


PATHS = [
    "/live/KEY",
    "/a/b/KEY",
    "/a/b/c/KEY",
    "/KEY",
    "/live/KEY?token=1",
    "/live/k/x:y",
    "/live/a:b/c",
    "/live/mp4:KEY",
    "/ondemand/KEY",
    "/live/KEY?slist=abc&x=1",
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("userinfo", ["", "user:pw@"])
async def test_the_target_sees_the_same_connect_as_when_ffmpeg_resolves_the_name(
    ffmpeg_exe: str, sources: Sources, path: str, userinfo: str
) -> None:
    async with connect_recorder() as recorder:
        url = f"rtmp://{userinfo}localhost:{recorder.port}{path}"
        plan = await plan_connection(url, resolve=resolve_addresses, allow_private=True)
        assert plan.url.startswith(f"rtmp://{userinfo}127.0.0.1:{recorder.port}/")
        by_ffmpeg = await publish_once(ffmpeg_exe, sources, recorder, [url])
        pinned = restream_argv("", publish_url=plan.url, tc_url=plan.tc_url)
        by_us = await publish_once(ffmpeg_exe, sources, recorder, pinned[-3:])
    assert by_us == by_ffmpeg
    assert by_ffmpeg.tc_url is not None and "//localhost:" in by_ffmpeg.tc_url


async def publish_once(
    ffmpeg: str, sources: Sources, recorder: ConnectRecorder, output: list[str]
) -> Connected:
    """Publish one second of ``sources.av`` to ``output`` (URL, with options before it) and
    return what the recorder saw."""
    recorder.seen.clear()
    argv = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-t", "1"]
    argv += ["-i", str(sources.av), "-c", "copy", "-f", "flv", *output]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert recorder.seen, stderr.decode(errors="replace")
    return recorder.seen[0]
