"""How many adaptive-bitrate ladders one node keeps transcoding in real time: ladder streams
(a 720p30 publish, ``renditions: ["source", "480p", "360p", "240p"]``) are added one at a time to
one ``liverelay serve``; after each, every stream's ``currentSession.transcodeSpeed`` (ffmpeg's
``speed=``) is read once a second, with the rungs dropped so far and the CPU of the server's
process tree. A step keeps up when every stream's speed stays at or above 1.0 (a little under
it is the wobble of a live input; the output drops a rung below 0.97 for 10 s). Bounded: ``--max``
steps (default 3) of ``--seconds`` (default 20) after an 8 s warm-up, about 2 minutes.

    python -m bench.abr_capacity [--max 3] [--seconds 20] [--mode standard|low]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import procstat
from bench.abr import LADDER
from bench.common import median, source_clip, stop_process, write_result
from bench.llhls_load import copy_argv, spawn, wait_playable
from bench.servers import Liverelay

WARM_UP_SECONDS = 8.0


async def add_stream(http: aiohttp.ClientSession, server: Liverelay, mode: str, n: int) -> dict:
    body = {"name": f"bench-abr-{n}", "renditions": LADDER, "latencyMode": mode}
    async with http.post(f"{server.base_url}/v1/livestreams", json=body) as r:
        if r.status != 201:
            raise RuntimeError(f"POST /v1/livestreams: {r.status} {await r.text()}")
        stream: dict[str, Any] = await r.json()
    return stream


async def sample(
    http: aiohttp.ClientSession, server: Liverelay, streams: list[dict], seconds: float
) -> dict[str, Any]:
    """Each stream's speed once a second for ``seconds``; the rungs dropped by the end."""
    speeds: list[list[float]] = [[] for _ in streams]
    dropped: list[list[str]] = [[] for _ in streams]
    assert server.proc is not None
    begin = procstat.cpu_sample([server.proc.pid])
    for _ in range(int(seconds)):
        await asyncio.sleep(1.0)  # a sampling period, not an event
        for i, stream in enumerate(streams):
            url = f"{server.base_url}/v1/livestreams/{stream['id']}"
            async with http.get(url) as r:
                session = (await r.json()).get("currentSession") or {}
            if session.get("transcodeSpeed") is not None:
                speeds[i].append(session["transcodeSpeed"])
            dropped[i] = session.get("droppedRenditions") or []
    end = procstat.cpu_sample([server.proc.pid])
    return {
        "streams": len(streams),
        "median_speed": [median(s) for s in speeds],
        "min_speed": [min(s) if s else None for s in speeds],
        "dropped": dropped,
        "kept_up": all(s and min(s) >= 0.97 for s in speeds) and not any(dropped),
        "tree_cpu_percent": procstat.cpu_percent(begin, end),
        "loadavg": os.getloadavg(),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    result: dict[str, Any] = {"machine": procstat.machine(), "argv": sys.argv[1:], "steps": []}
    server = Liverelay(Path(tempfile.mkdtemp(prefix="bench-abr-capacity-")))
    publishers: list[asyncio.subprocess.Process] = []
    try:
        await server.start()
        async with aiohttp.ClientSession(headers=server.auth) as http:
            streams: list[dict] = []
            for n in range(1, args.max + 1):
                stream = await add_stream(http, server, args.mode, n)
                publishers.append(await spawn(copy_argv(source_clip(), stream["upstreamUrl"])))
                base = stream["downstreamUrl"].rsplit("/", 1)[0]
                await wait_playable([f"{base}/source.m3u8"])
                streams.append(stream)
                await asyncio.sleep(WARM_UP_SECONDS)
                step = await sample(http, server, streams, args.seconds)
                print(step, flush=True)
                result["steps"].append(step)
    finally:
        for publisher in publishers:
            await stop_process(publisher, grace=5)
        await server.stop()
    result["mode"] = args.mode
    result["seconds"] = time.monotonic() - started
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.abr_capacity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--max", type=int, default=3, help="ladder streams at the last step")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window per step")
    parser.add_argument("--mode", choices=["standard", "low"], default="standard")
    args = parser.parse_args(argv)
    if not 1 <= args.max <= 6 or not 1 <= args.seconds <= 120:
        parser.error("--max is 1 to 6, --seconds 1 to 120 (a bounded run)")
    return args


if __name__ == "__main__":
    outcome = asyncio.run(main(parse_args()))
    print(f"results: {write_result(outcome, None, 'abr-capacity')}")
