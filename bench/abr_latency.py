"""The latency a transcoded rung adds in low-latency mode: one 720p30 publish with
``renditions: ["source", "480p", "360p", "240p"]`` and ``latencyMode: "low"``; every rendition's
media playlist is polled every ``--poll`` seconds (default 0.03) and the wall-clock time each
part (by media sequence number and index) and each complete segment first appears is noted.
A rung's parts and segments line up with the source's (its keyframes are the source's, cut by
the same packager), so the time a part appears on a rung minus the time the same part appeared
on the source is what the transcoding adds on the way to the viewer; the source's own
glass-to-glass latency is ``bench/llhls.py``'s. Bounded: ``--seconds`` (default 30) after a
6 s warm-up, about a minute.

    python -m bench.abr_latency [--seconds 30] [--poll 0.03]
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
from bench.common import (
    bench_parser,
    create_livestream,
    median,
    percentile,
    source_clip,
    stop_process,
    write_result,
)
from bench.llhls_load import copy_argv, spawn, wait_playable
from bench.servers import Liverelay

WARM_UP_SECONDS = 6.0


def listed(playlist: str) -> tuple[list[tuple[int, int, float]], list[int]]:
    """The parts (media sequence number, index, duration) and the complete segments' numbers
    of a low-latency media playlist."""
    parts: list[tuple[int, int, float]] = []
    segments: list[int] = []
    msn, index = 0, 0
    for line in playlist.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            msn = int(line.partition(":")[2])
        elif line.startswith("#EXT-X-PART:"):
            duration = float(line.split("DURATION=", 1)[1].split(",", 1)[0])
            parts.append((msn, index, duration))
            index += 1
        elif line.startswith("#EXTINF:"):
            segments.append(msn)
        elif line and not line.startswith("#"):
            msn, index = msn + 1, 0
    return parts, segments


async def watch(
    http: aiohttp.ClientSession, url: str, seconds: float, poll: float
) -> tuple[dict[tuple[int, int], float], dict[int, float], dict[tuple[int, int], float]]:
    """When each part and segment of ``url`` first appeared (and each part's duration)."""
    parts: dict[tuple[int, int], float] = {}
    durations: dict[tuple[int, int], float] = {}
    segments: dict[int, float] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        async with http.get(url) as r:
            text = await r.text() if r.status == 200 else ""
        now = time.time()
        found_parts, found_segments = listed(text)
        for msn, index, duration in found_parts:
            parts.setdefault((msn, index), now)
            durations.setdefault((msn, index), duration)
        for msn in found_segments:
            segments.setdefault(msn, now)
        await asyncio.sleep(poll)  # the polling period, not an event
    return parts, segments, durations


def lag(rung: dict[Any, float], source: dict[Any, float]) -> dict[str, Any]:
    deltas = [rung[k] - source[k] for k in rung.keys() & source.keys()]
    return {
        "count": len(deltas),
        "median_s": median(deltas),
        "p10_s": percentile(deltas, 10),
        "p90_s": percentile(deltas, 90),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    result: dict[str, Any] = {"machine": procstat.machine(), "argv": sys.argv[1:]}
    server = Liverelay(Path(tempfile.mkdtemp(prefix="bench-abr-latency-")))
    publisher = None
    try:
        await server.start()
        async with aiohttp.ClientSession(headers=server.auth) as http:
            body = {"name": "bench-abr-latency", "renditions": LADDER, "latencyMode": "low"}
            stream = await create_livestream(http, server.base_url, body)
            publisher = await spawn(copy_argv(source_clip(), stream["upstreamUrl"]))
            base = stream["downstreamUrl"].rsplit("/", 1)[0]
            urls = {name: f"{base}/{name}.m3u8" for name in LADDER}
            await wait_playable(list(urls.values()))
            await asyncio.sleep(WARM_UP_SECONDS)
            watched = await asyncio.gather(
                *(watch(http, url, args.seconds, args.poll) for url in urls.values())
            )
            async with http.get(f"{server.base_url}/v1/livestreams/{stream['id']}") as r:
                session = (await r.json()).get("currentSession") or {}
    finally:
        if publisher is not None:
            await stop_process(publisher, grace=5)
        await server.stop()
    by_name = dict(zip(LADDER, watched, strict=True))
    source_parts, source_segments, source_durations = by_name["source"]
    result["renditions"] = {}
    for name in LADDER[1:]:
        parts, segments, durations = by_name[name]
        same = [k for k in durations.keys() & source_durations.keys()]
        mismatched = sum(abs(durations[k] - source_durations[k]) > 0.05 for k in same)
        result["renditions"][name] = {
            "part_lag": lag(parts, source_parts),
            "segment_lag": lag(segments, source_segments),
            "parts_of_another_length": mismatched,
        }
        print(name, result["renditions"][name], flush=True)
    result["dropped"] = session.get("droppedRenditions")
    result["transcode_speed"] = session.get("transcodeSpeed")
    result["loadavg"] = os.getloadavg()
    result["seconds"] = time.monotonic() - started
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = bench_parser("bench.abr_latency", __doc__)
    parser.add_argument("--seconds", type=float, default=30.0, help="measuring window")
    parser.add_argument("--poll", type=float, default=0.03, help="seconds between polls")
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 120 or not 0.005 <= args.poll <= 1:
        parser.error("--seconds is 1 to 120, --poll 0.005 to 1 (a bounded run)")
    return args


if __name__ == "__main__":
    outcome = asyncio.run(main(parse_args()))
    print(f"results: {write_result(outcome, None, 'abr-latency')}")
