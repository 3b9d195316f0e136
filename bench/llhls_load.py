"""Streams for the low-latency benchmark (:mod:`bench.llhls`): creating them, feeding them with
looped copies of the source clip, waiting until they play, and the CPU they cost per stream."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from bench import procstat
from bench.common import ffmpeg_exe, source_clip, stop_process
from bench.servers import Liverelay


def copy_argv(source: Path, url: str) -> list[str]:
    return [
        ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
        "-readrate_initial_burst", "0", "-stream_loop", "-1", "-i", str(source),
        "-c", "copy", "-f", "flv", url,
    ]  # fmt: skip


async def spawn(argv: list[str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL
    )


async def create(server: Liverelay, mode: str, count: int) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession(headers=server.auth) as http:
        bodies = []
        for i in range(count):
            body = {"name": f"bench-{mode}-{i}", "latencyMode": mode}
            async with http.post(f"{server.base_url}/v1/livestreams", json=body) as r:
                if r.status != 201:
                    raise RuntimeError(f"POST /v1/livestreams: {r.status} {await r.text()}")
                bodies.append(await r.json())
        return bodies


async def wait_playable(urls: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        for url in urls:
            while True:
                async with http.get(url) as r:
                    if r.status == 200 and "#EXTINF" in await r.text():
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} not playable after {timeout:g} s")
                await asyncio.sleep(0.2)


@asynccontextmanager
async def background_streams(server: Liverelay, mode: str, count: int) -> AsyncIterator[None]:
    """``count`` streams in ``mode``, each fed by a looped copy of the source clip at real time
    and playable, for as long as the context lasts (load beside a measured stream)."""
    publishers = []
    try:
        bodies = await create(server, mode, count)
        for body in bodies:
            publishers.append(await spawn(copy_argv(source_clip(), body["upstreamUrl"])))
        await wait_playable([b["downstreamUrl"] for b in bodies], timeout=60 + count)
        yield
    finally:
        for publisher in publishers:
            await stop_process(publisher, grace=5)


async def cpu_per_stream(mode: str, streams: int, seconds: float) -> dict[str, Any]:
    """CPU per stream of the server's process tree (Python and its ffmpeg), ``streams`` in
    ``mode``."""
    server = Liverelay(Path(tempfile.mkdtemp(prefix=f"bench-llhls-{mode}-")))
    publishers = []
    try:
        await server.start()
        bodies = await create(server, mode, streams)
        for body in bodies:
            publishers.append(await spawn(copy_argv(source_clip(), body["upstreamUrl"])))
        await wait_playable([b["downstreamUrl"] for b in bodies])
        assert server.proc is not None
        begin = procstat.cpu_sample([server.proc.pid])
        await asyncio.sleep(seconds)
        end = procstat.cpu_sample([server.proc.pid])
    finally:
        for publisher in publishers:
            await stop_process(publisher, grace=5)
        await server.stop()
    percent = procstat.cpu_percent(begin, end)
    return {
        "mode": mode,
        "streams": streams,
        "tree_cpu_percent": percent,
        "python_cpu_percent": procstat.root_cpu_percent(begin, end),
        "cpu_percent_per_stream": percent / streams,
    }
