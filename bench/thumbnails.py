"""Thumbnail benchmark: server CPU while viewers ask for one live stream's thumbnail 100 times a
second, against the same stream with no thumbnail requests, and against requests that all miss
the cache (every one a different width, so every one decodes).

    python -m bench.thumbnails [--mode standard|low] [--rate 100] [--seconds 20]
                               [--miss-rate 10]

Run by hand (never by pytest); loopback only, each phase bounded in time and in requests. One
``liverelay serve`` (SQLite), one ffmpeg publisher of the 720p30 source clip
(:func:`bench.common.source_clip`) looped at real time. CPU is the server process's own (its
ffmpeg child left out: it does the same work in every phase). Results go to
bench/results/thumbnails-<time>.json and a summary on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import procstat
from bench.common import ffmpeg_exe, median, percentile, source_clip, stop_process, write_result
from bench.servers import Liverelay

CONCURRENCY = 32
"""Requests in flight at most (a request that would exceed it is counted as skipped)."""


async def create_stream(server: Liverelay, mode: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(headers=server.auth) as http,
        http.post(
            f"{server.base_url}/v1/livestreams", json={"name": "thumbs", "latencyMode": mode}
        ) as response,
    ):
        if response.status != 201:
            raise RuntimeError(f"POST /v1/livestreams: {response.status} {await response.text()}")
        body: dict[str, Any] = await response.json()
        return body


async def wait_for_thumbnail(http: aiohttp.ClientSession, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with http.get(url) as response:
            await response.read()
            if response.status == 200:
                return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"no thumbnail at {url} within {timeout:g} s")


async def phase(
    server: Liverelay, http: aiohttp.ClientSession, urls: list[str], rate: float, seconds: float
) -> dict[str, Any]:
    """Ask for ``urls`` in turn, ``rate`` a second for ``seconds`` (``rate`` 0: none) and measure
    the server's own CPU meanwhile."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    in_flight: set[asyncio.Task[None]] = set()
    skipped = 0

    async def one(url: str) -> None:
        started = time.monotonic()
        async with http.get(url) as response:
            await response.read()
            statuses[response.status] = statuses.get(response.status, 0) + 1
        latencies.append(time.monotonic() - started)

    start = procstat.cpu_sample(server.root_pids)
    began = time.monotonic()
    count = int(rate * seconds)
    for index in range(count):
        await asyncio.sleep(max(0.0, began + index / rate - time.monotonic()))
        if len(in_flight) >= CONCURRENCY:
            skipped += 1
            continue
        task = asyncio.create_task(one(urls[index % len(urls)]))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.sleep(max(0.0, began + seconds - time.monotonic()))
    if in_flight:
        await asyncio.wait(in_flight, timeout=10)
    end = procstat.cpu_sample(server.root_pids)
    return {
        "rate": rate,
        "seconds": seconds,
        "requests": len(latencies),
        "skipped": skipped,
        "statuses": statuses,
        "server_cpu_percent": round(procstat.root_cpu_percent(start, end), 1),
        "latency_ms_median": _ms(median(latencies)),
        "latency_ms_p99": _ms(percentile(latencies, 99)),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    clip = source_clip()
    result: dict[str, Any] = {"machine": procstat.machine(), "mode": args.mode}
    with tempfile.TemporaryDirectory(prefix="bench-thumbs-") as workdir:
        server = Liverelay(Path(workdir))
        await server.start()
        publisher = None
        try:
            stream = await create_stream(server, args.mode)
            publisher = await asyncio.create_subprocess_exec(
                *[ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-re"],
                *["-readrate_initial_burst", "0", "-stream_loop", "-1", "-i", str(clip)],
                *["-c", "copy", "-f", "flv", stream["upstreamUrl"]],
                stdin=asyncio.subprocess.DEVNULL,
            )
            url = f"{server.base_url}/live/{stream['id']}/thumbnail.jpg"
            async with aiohttp.ClientSession() as http:
                await wait_for_thumbnail(http, url, 60)
                result["idle"] = await phase(server, http, [url], 0, args.seconds)
                result["cached"] = await phase(server, http, [url], args.rate, args.seconds)
                misses = [f"{url}?width={width}" for width in range(16, 1921)]
                result["uncached"] = await phase(server, http, misses, args.miss_rate, args.seconds)
        finally:
            if publisher is not None:
                await stop_process(publisher)
            await server.stop()
    cached, idle = result["cached"], result["idle"]
    result["cpu_percent_for_cached_requests"] = round(
        cached["server_cpu_percent"] - idle["server_cpu_percent"], 1
    )
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.thumbnails",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--mode", choices=["standard", "low"], default="standard")
    parser.add_argument("--rate", type=float, default=100.0, help="cached requests per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument(
        "--miss-rate", type=float, default=10.0, help="requests per second that all decode"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    outcome = asyncio.run(main(parse_args()))
    print(f"results: {write_result(outcome, None, 'thumbnails')}")
    for key in ("idle", "cached", "uncached", "cpu_percent_for_cached_requests"):
        print(key, outcome.get(key))
