"""CPU of an adaptive-bitrate ladder: one 720p30 publish with three transcoded rungs (480p,
360p, 240p) relayed by ``liverelay serve`` (its Python process and its one ffmpeg), against
the same ffmpeg command (:func:`workers.ladder_argv.ladder_hls_argv`) run by hand on the same
input, the same ladder in low-latency mode, and a source-only stream for the copy baseline.
Bounded: four phases of ``--seconds`` (default 20) after a 6 s warm-up each, about 2 minutes
in all.

    python -m bench.abr [--seconds 20]
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
from bench.common import (
    bench_parser,
    create_livestream,
    ffmpeg_exe,
    source_clip,
    stop_process,
    write_result,
)
from bench.llhls_load import copy_argv, spawn, wait_playable
from bench.servers import Liverelay
from workers.ladder_argv import RungOutput, ladder_hls_argv
from workers.renditions import RUNGS

LADDER = ["source", "480p", "360p", "240p"]
WARM_UP_SECONDS = 6.0


async def by_hand(seconds: float) -> dict[str, Any]:
    """The ladder's ffmpeg fed by a publisher through a pipe, as liverelay feeds it."""
    directory = Path(tempfile.mkdtemp(prefix="bench-abr-hand-"))
    rungs = [
        RungOutput(RUNGS[n], str(directory / f"{n}-%d.ts"), str(directory / f"{n}.m3u8"))
        for n in LADDER[1:]
    ]
    argv = ladder_hls_argv(
        ffmpeg_exe(),
        segment_seconds=2,
        source_pattern=str(directory / "s-%d.ts"),
        source_playlist=str(directory / "s.m3u8"),
        rungs=rungs,
    )
    read_fd, write_fd = os.pipe()
    try:
        publisher = await asyncio.create_subprocess_exec(
            *copy_argv(source_clip(), "-"), stdin=asyncio.subprocess.DEVNULL, stdout=write_fd
        )  # FLV on stdout
        ladder = await asyncio.create_subprocess_exec(
            *argv, stdin=read_fd, stdout=asyncio.subprocess.DEVNULL
        )
    finally:
        os.close(read_fd)
        os.close(write_fd)
    try:
        await asyncio.sleep(WARM_UP_SECONDS)  # a warm-up of fixed length, not an event
        begin = procstat.cpu_sample([ladder.pid])
        await asyncio.sleep(seconds)
        end = procstat.cpu_sample([ladder.pid])
    finally:
        await stop_process(publisher, grace=5)
        await stop_process(ladder, grace=5)
    return {"ladder": LADDER, "ffmpeg_cpu_percent": procstat.cpu_percent(begin, end)}


async def through_liverelay(
    renditions: list[str], seconds: float, mode: str = "standard"
) -> dict[str, Any]:
    """One stream with ``renditions`` in latency ``mode`` through ``liverelay serve``: CPU of
    its process tree."""
    server = Liverelay(Path(tempfile.mkdtemp(prefix="bench-abr-")))
    publisher = None
    try:
        await server.start()
        async with aiohttp.ClientSession(headers=server.auth) as http:
            body = {"name": "bench-abr", "renditions": renditions, "latencyMode": mode}
            stream = await create_livestream(http, server.base_url, body)
        publisher = await spawn(copy_argv(source_clip(), stream["upstreamUrl"]))
        base = stream["downstreamUrl"].rsplit("/", 1)[0]
        last = "source.m3u8" if len(renditions) > 1 else "index.m3u8"
        await wait_playable([f"{base}/{last}"])
        await asyncio.sleep(WARM_UP_SECONDS)
        assert server.proc is not None
        begin = procstat.cpu_sample([server.proc.pid])
        await asyncio.sleep(seconds)
        end = procstat.cpu_sample([server.proc.pid])
    finally:
        if publisher is not None:
            await stop_process(publisher, grace=5)
        await server.stop()
    return {
        "ladder": renditions,
        "mode": mode,
        "tree_cpu_percent": procstat.cpu_percent(begin, end),
        "python_cpu_percent": procstat.root_cpu_percent(begin, end),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    result: dict[str, Any] = {"machine": procstat.machine(), "argv": sys.argv[1:]}
    result["by_hand"] = await by_hand(args.seconds)
    print(result["by_hand"], flush=True)
    result["liverelay"] = await through_liverelay(LADDER, args.seconds)
    print(result["liverelay"], flush=True)
    result["liverelay_low"] = await through_liverelay(LADDER, args.seconds, "low")
    print(result["liverelay_low"], flush=True)
    result["source_only"] = await through_liverelay(["source"], args.seconds)
    print(result["source_only"], flush=True)
    result["seconds"] = time.monotonic() - started
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = bench_parser("bench.abr", __doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window per phase")
    return parser.parse_args(argv)


if __name__ == "__main__":
    outcome = asyncio.run(main(parse_args()))
    print(f"results: {write_result(outcome, None, 'abr')}")
