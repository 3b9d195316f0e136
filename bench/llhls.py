"""Low-latency HLS benchmark: glass-to-glass latency in Chromium + hls.js (low against standard
mode), requests per second of a low-latency viewer, server CPU per request of each kind
(:mod:`bench.llhls_requests`), server CPU per playlist/part request and the server's event-loop
lag (its ``liverelay_event_loop_lag_seconds`` histogram) under simulated low-latency viewers,
and CPU per stream of low against standard mode; on request (``--phases loaded``), low mode's
latency with ``--loaded-streams`` other low-latency streams live on the same server.

    python -m bench.llhls [--phases latency,requests,viewers,cpu] [--latency-seconds 60]
                          [--latency-starts 1] [--gop 2] [--request-seconds 8] [--viewers 50,200]
                          [--viewer-seconds 20] [--streams 16] [--cpu-seconds 30] [--pin]

``--pin`` puts the server (its threads and ffmpeg) on the first CPU this process may use and
the benchmark itself (the simulated viewers, the publishers, the ``/healthz`` probe) on the
others, so that the viewers do not take the server's CPU; other load on the machine still can,
which each viewers step reports as the time the server's main thread waited for a CPU.

Run by hand (never by pytest); loopback only, every phase bounded in count and time. Needs
Debian's Chromium (``/usr/bin/chromium`` or ``LIVERELAY_TEST_CHROMIUM``), Python playwright and
hls.js from ``npm ci``. Results go to bench/results/llhls-<time>.json and a summary on stdout.

Glass to glass: the publisher is ffmpeg generating video live at 30 fps (``realtime``) with
its frame number drawn as 16 black/white bars; the page draws every presented frame
(``requestVideoFrameCallback``) on a canvas, reads the number back and compares the browser's
clock with the time that frame was fed (the publisher's start + number / 30). The start is
taken when ffmpeg is spawned, before its own start-up, so the figure errs high by that. The
publisher's keyframe interval is ``--gop`` seconds (2 by default); each start also records how
the player started (:func:`bench.llhls_page.start_up`).
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

from bench import procstat
from bench.common import median, percentile, source_clip, stop_process, write_result
from bench.llhls_load import (
    background_streams,
    copy_argv,
    cpu_per_stream,
    create,
    spawn,
    wait_playable,
)
from bench.llhls_page import BAR, BITS, FPS, PAGE, counter_argv, page_server, start_up
from bench.llhls_requests import request_costs
from bench.llhls_viewers import lag_quantile, loop_lag_buckets, probe_process, run_viewers
from bench.servers import Liverelay, extract_ref

CHROMIUM = os.environ.get("LIVERELAY_TEST_CHROMIUM", "/usr/bin/chromium")
METRICS_TOKEN = "bench-llhls-metrics"
"""``/metrics`` on the server's public port, for its event-loop lag histogram."""
LAG_PROBE_SECONDS = 0.02
"""The server probes its loop's lag this often: enough samples for a p99 in a few seconds."""
WARM_UP = 10.0
"""Seconds of playback left out before latency is measured."""


async def glass_to_glass(
    server: Liverelay, mode: str, seconds: float, starts: int = 1, gop: float = 2.0
) -> dict[str, Any]:
    """Median latency of one stream in ``mode`` played by hls.js for ``seconds``, ``starts``
    times with a new player each (hls.js keeps the distance from the live edge it started at:
    one start is one draw). ``gop``: the publisher's keyframe interval in seconds."""
    from playwright.async_api import async_playwright

    stream = (await create(server, mode, 1))[0]
    url = stream["downstreamUrl"]
    fed_from = time.time()
    publisher = await spawn(counter_argv(stream["upstreamUrl"], gop))
    html = PAGE.format(
        hls_js=f"{server.base_url}/console/vendor/hls.min.js",
        width=BITS * BAR,
        bits=BITS,
        bar=BAR,
        low="true" if mode == "low" else "false",
        url=url,
    )
    runner, page_url = await page_server(html)
    requests = 0
    runs: list[dict[str, Any]] = []
    try:
        await wait_playable([url])
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM,
                args=["--autoplay-policy=no-user-gesture-required", "--no-sandbox"],
            )

            def on_request(request: Any) -> None:
                nonlocal requests
                requests += request.url.startswith(url.rsplit("/", 1)[0])

            for _ in range(starts):
                page = await browser.new_page()
                await page.goto(page_url)
                await page.wait_for_function("window.samples.length > 0", timeout=30_000)
                await asyncio.sleep(WARM_UP)  # playback settles (a measured duration)
                page.on("request", on_request)
                start = await page.evaluate("Date.now()")
                await asyncio.sleep(seconds)
                page.remove_listener("request", on_request)
                fatal = await page.evaluate("window.fatal")
                samples = await page.evaluate(f"window.samples.filter(s => s[0] >= {start})")
                player = await page.evaluate(f"window.player.filter(s => s[0] >= {start})")
                timeline = await page.evaluate("window.timeline")
                await page.close()
                latencies = [shown / 1000 - (fed_from + n / FPS) for shown, n in samples]
                runs.append(
                    {
                        "frames": len(samples),
                        "fatal": fatal,
                        "latencies": latencies,
                        "median_s": median(latencies),
                        "hls_latency_s": median([p[1] for p in player]),
                        "hls_target_latency_s": median([p[2] for p in player if p[2]]),
                        "buffer_ahead_s": median([p[3] for p in player]),
                        **start_up(timeline),
                        "timeline": timeline,
                    }
                )
            await browser.close()
    finally:
        await runner.cleanup()
        await stop_process(publisher, grace=5)
    latencies = [x for run in runs for x in run.pop("latencies")]
    return {
        "mode": mode,
        "gop_s": gop,
        "seconds": seconds,
        "frames": sum(run["frames"] for run in runs),
        "fatal": next((run["fatal"] for run in runs if run["fatal"]), None),
        "median_s": median(latencies),
        "p10_s": percentile(latencies, 10),
        "p90_s": percentile(latencies, 90),
        "requests_per_s": requests / (seconds * starts),
        "hls_latency_s": median([run["hls_latency_s"] for run in runs]),
        "hls_target_latency_s": median([run["hls_target_latency_s"] for run in runs]),
        "buffer_ahead_s": median([run["buffer_ahead_s"] for run in runs]),
        "starts": runs,
    }


async def viewers_cpu(server: Liverelay, counts: list[int], seconds: float) -> list[dict[str, Any]]:
    """Server CPU per request of ``count`` simulated low-latency viewers of one stream."""
    stream = (await create(server, "low", 1))[0]
    publisher = await spawn(copy_argv(source_clip(), stream["upstreamUrl"]))
    assert server.proc is not None
    roots = [server.proc.pid]
    rows = []
    try:
        await wait_playable([stream["downstreamUrl"]])
        begin = procstat.cpu_sample(roots)
        await asyncio.sleep(seconds / 2)  # the stream alone: the baseline
        end = procstat.cpu_sample(roots)
        baseline = (
            (end.roots_own_ticks - begin.roots_own_ticks) / procstat.CLK_TCK / (end.at - begin.at)
        )
        for count in counts:
            probe = asyncio.create_task(probe_process(server.base_url, seconds - 1))
            lag_before = await loop_lag_buckets(server.base_url, METRICS_TOKEN)
            delay_before = procstat.run_delay_seconds(server.proc.pid)
            begin, own_begin = procstat.cpu_sample(roots), time.process_time()
            result = await run_viewers(stream["downstreamUrl"], count, seconds)
            end, own_end = procstat.cpu_sample(roots), time.process_time()
            lag_after = await loop_lag_buckets(server.base_url, METRICS_TOKEN)
            delay = procstat.run_delay_seconds(server.proc.pid) - delay_before
            lags = await probe
            elapsed = end.at - begin.at
            cpu = (end.roots_own_ticks - begin.roots_own_ticks) / procstat.CLK_TCK
            rows.append(
                {
                    "viewers": count,
                    "requests": result.requests,
                    "errors": result.errors,
                    "statuses": result.statuses,
                    "requests_per_s_per_viewer": result.requests / elapsed / count,
                    "server_cpu_cores": cpu / elapsed,
                    "baseline_cpu_cores": baseline,
                    "cpu_ms_per_request": 1000
                    * (cpu - baseline * elapsed)
                    / max(result.requests, 1),
                    "loop_lag_p50_ms": _ms(lag_quantile(lag_before, lag_after, 0.50)),
                    "loop_lag_p99_ms": _ms(lag_quantile(lag_before, lag_after, 0.99)),
                    "loop_lag_max_ms": _ms(lag_quantile(lag_before, lag_after, 1.0)),
                    "waiting_for_cpu_ms_per_s": 1000 * delay / elapsed,
                    "viewers_process_cpu_cores": (own_end - own_begin) / elapsed,
                    "healthz_p50_ms": percentile(lags, 50),
                    "healthz_p99_ms": percentile(lags, 99),
                }
            )
    finally:
        await stop_process(publisher, grace=5)
    return rows


async def requests_cpu(server: Liverelay, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Server CPU per request of each kind (:mod:`bench.llhls_requests`), one stream."""
    stream = (await create(server, "low", 1))[0]
    publisher = await spawn(copy_argv(source_clip(), stream["upstreamUrl"]))
    assert server.proc is not None
    try:
        await wait_playable([stream["downstreamUrl"]])
        return await request_costs(
            stream["downstreamUrl"],
            server.proc.pid,
            seconds=args.request_seconds,
            clients=args.request_clients,
            blocking_clients=args.blocking_clients,
        )
    finally:
        await stop_process(publisher, grace=5)


def viewers_line(row: dict[str, Any]) -> str:
    """One viewers step in a line: the lag beside how long the server waited for a CPU (the
    part of the lag the machine, not the server's work, is to blame for)."""

    def ms(key: str) -> str:
        value = row[key]
        return "-" if value is None else f"{value:.1f}"

    return (
        f"{row['viewers']} viewers: {row['cpu_ms_per_request']:.3f} ms CPU/request, "
        f"{row['server_cpu_cores']:.2f} of a core, "
        f"{row['requests_per_s_per_viewer']:.1f} req/s per viewer, "
        f"loop lag p50/p99/max {ms('loop_lag_p50_ms')}/{ms('loop_lag_p99_ms')}/"
        f"{ms('loop_lag_max_ms')} ms, server waited for a CPU "
        f"{row['waiting_for_cpu_ms_per_s']:.0f} ms/s, "
        f"viewers' process {row['viewers_process_cpu_cores']:.2f} of a core"
    )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000 * seconds


async def main(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"machine": procstat.machine(), "argv": sys.argv[1:]}
    if args.liverelay_ref:
        Liverelay.source_dir, result["liverelay_commit"] = extract_ref(args.liverelay_ref)
    started = time.monotonic()
    server = Liverelay(Path(tempfile.mkdtemp(prefix="bench-llhls-")))
    server.env["LIVERELAY_METRICS_TOKEN"] = METRICS_TOKEN  # the loop-lag histogram
    server.env["LIVERELAY_LOOP_LAG_PROBE_SECONDS"] = str(LAG_PROBE_SECONDS)
    if args.liverelay_ref:  # git archive has no node_modules: hls.js from this working tree's
        server.env["LIVERELAY_CONSOLE_VENDOR_DIR"] = str(Path(__file__).parents[1] / "node_modules")
    phases = set(args.phases.split(","))
    server_cpus = None
    if args.pin:
        server_cpus, bench_cpus = procstat.split_cpus()
        procstat.pin_tree(os.getpid(), bench_cpus)  # this process, before it starts others
        result["pinned"] = {"server": sorted(server_cpus), "bench": sorted(bench_cpus)}
    try:
        await server.start()
        if server_cpus is not None:
            assert server.proc is not None
            procstat.pin_tree(server.proc.pid, server_cpus)
        if "latency" in phases:
            result["latency"] = [
                await glass_to_glass(
                    server, mode, args.latency_seconds, args.latency_starts, args.gop
                )
                for mode in args.latency_modes.split(",")
            ]
            print(result["latency"], flush=True)
        if "loaded" in phases:  # low mode's latency beside --loaded-streams other streams
            async with background_streams(server, "low", args.loaded_streams):
                loaded = await glass_to_glass(server, "low", args.latency_seconds, gop=args.gop)
            result["loaded_latency"] = {"streams": args.loaded_streams + 1, **loaded}
            print(result["loaded_latency"], flush=True)
        if "requests" in phases:
            result["requests"] = await requests_cpu(server, args)
        if "viewers" in phases:
            counts = [int(c) for c in args.viewers.split(",")]
            result["viewers"] = await viewers_cpu(server, counts, args.viewer_seconds)
            for row in result["viewers"]:
                print(viewers_line(row), flush=True)
    finally:
        await server.stop()
    if "cpu" in phases:
        result["cpu_per_stream"] = [
            await cpu_per_stream(mode, args.streams, args.cpu_seconds)
            for mode in ("low", "standard")
        ]
        low, standard = result["cpu_per_stream"]
        result["low_over_standard"] = (
            low["cpu_percent_per_stream"] / standard["cpu_percent_per_stream"]
        )
    result["seconds"] = time.monotonic() - started
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.llhls",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--phases",
        default="latency,requests,viewers,cpu",
        help="which of latency,requests,viewers,cpu,loaded to run (loaded: not by default)",
    )
    parser.add_argument(
        "--loaded-streams", type=int, default=63, help="other low streams in the loaded phase"
    )
    parser.add_argument("--request-seconds", type=float, default=8.0, help="per request kind")
    parser.add_argument("--request-clients", type=int, default=4, help="for answered kinds")
    parser.add_argument("--blocking-clients", type=int, default=50, help="for blocking reloads")
    parser.add_argument("--latency-seconds", type=float, default=60.0)
    parser.add_argument("--latency-starts", type=int, default=1, help="players, one by one")
    parser.add_argument("--latency-modes", default="low,standard", help="modes to play")
    parser.add_argument(
        "--gop", type=float, default=2.0, help="latency publisher's keyframe interval, seconds"
    )
    parser.add_argument("--viewers", default="50,200", help="viewer counts, one step each")
    parser.add_argument("--viewer-seconds", type=float, default=20.0)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--cpu-seconds", type=float, default=30.0)
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the server on one CPU, the benchmark (viewers, publishers) on the others",
    )
    parser.add_argument(
        "--liverelay-ref", default=None, help="benchmark this git commit (not the working tree)"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    outcome = asyncio.run(main(parse_args()))
    print(f"results: {write_result(outcome, None, 'llhls')}")
    for key in ("latency", "loaded_latency", "requests", "viewers", "cpu_per_stream"):
        print(key, outcome.get(key))
