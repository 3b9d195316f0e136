"""Side-by-side ingest/HLS benchmark: liverelay vs nginx-rtmp (vs node-media-server 2).

    python -m bench.compare --streams 1,2,4,8,16,32,64 --seconds 30 --servers liverelay,nginx,nms

For each N (ramping) and each server in turn: start the server fresh in a temporary directory,
push N concurrent real-time publishers, wait until every stream has a playable HLS segment,
then measure for ``--seconds``. A server stops ramping at its first failed step. Results go to
bench/results/compare-<time>.json and a table on stdout. Loopback only; every step is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench import procstat
from bench.common import ffmpeg_exe, source_clip, write_result
from bench.compare_step import SERVERS, run_step, unavailable
from bench.compare_tables import capacity, compare_to, print_summary, table
from bench.servers import Liverelay, extract_ref


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line of ``python -m bench.compare``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--streams",
        default="1,2,4,8,16,32,64",
        help="comma-separated publisher counts to ramp through",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=30.0,
        help="measuring window per step (after every stream is playable)",
    )
    parser.add_argument(
        "--servers",
        default="liverelay,nginx,nms",
        help=f"comma-separated, from {','.join(SERVERS)}",
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=30.0,
        help="seconds for every stream of a step to become playable",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=2.0,
        help="seconds between playlist reloads of each stream's viewer",
    )
    parser.add_argument(
        "--no-stop", action="store_true", help="keep ramping a server after a failed step"
    )
    parser.add_argument("--cooldown", type=float, default=3.0, help="seconds between steps")
    parser.add_argument(
        "--retry-errors",
        type=int,
        default=1,
        help="times to rerun a step whose server failed to start or errored (not a capacity "
        "failure)",
    )
    parser.add_argument(
        "--api", action="store_true", help="also run the API benchmark (SQLite and PostgreSQL)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the servers' temp dirs")
    parser.add_argument(
        "--liverelay-ref",
        default=None,
        help="run liverelay from this git commit (git archive into a temp dir) instead of the "
        "working tree, e.g. HEAD",
    )
    parser.add_argument(
        "--liverelay-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a LIVERELAY_* setting for liverelay's server (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    return parser.parse_args(argv)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    """The ramp: for each N, one step per server still ramping (interleaved), then capacities,
    ratios and (with ``--api``) the API benchmark. Returns the JSON result."""
    counts = [int(x) for x in args.streams.split(",") if x.strip()]
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for name in servers:
        if name not in SERVERS:
            raise SystemExit(f"unknown server {name!r}; choose from {', '.join(SERVERS)}")
    skipped = {}
    for name in list(servers):
        reason = unavailable(name)
        if reason:
            print(f"skipping {name}: {reason}", file=sys.stderr)
            skipped[name] = reason
            servers.remove(name)
    ffmpeg = ffmpeg_exe()
    source = source_clip()
    liverelay_source = "working tree"
    if args.liverelay_ref:
        src_dir, sha = extract_ref(args.liverelay_ref)
        Liverelay.source_dir = src_dir
        liverelay_source = f"commit {sha}"
        print(f"liverelay from {liverelay_source} ({src_dir})", flush=True)
    Liverelay.extra_env = tuple(
        (name, value) for name, _, value in (pair.partition("=") for pair in args.liverelay_env)
    )
    result: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": procstat.machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "ffmpeg": ffmpeg,
        "source": str(source),
        "liverelay_source": liverelay_source,
        "skipped": skipped,
        "steps": [],
    }
    steps: list[dict[str, Any]] = result["steps"]
    active = list(servers)
    for n in counts:
        for name in list(active):
            for attempt in range(1 + args.retry_errors):
                print(f"[{time.strftime('%H:%M:%S')}] {name}: {n} stream(s) ...", flush=True)
                step = await run_step(
                    name,
                    n,
                    seconds=args.seconds,
                    source=source,
                    ffmpeg=ffmpeg,
                    startup_timeout=args.startup_timeout,
                    poll_interval=args.poll_interval,
                    keep=args.keep,
                )
                if "error" not in step:
                    break
                # the server did not start or crashed outside the measurement: not a capacity
                # result; try the step again
                step["attempt"] = attempt + 1
                print(f"    error: {step['error'][:300]}", flush=True)
                await asyncio.sleep(args.cooldown)
            steps.append(step)
            print(table([step]).splitlines()[-1] if step.get("ok") else table([step]), flush=True)
            if not step.get("ok") and not args.no_stop:
                active.remove(name)
            await asyncio.sleep(args.cooldown)
        if not active:
            break
    result["capacity"] = {name: capacity(steps, name) for name in servers}
    if "liverelay" in servers:
        result["vs"] = {
            ref: compare_to(steps, "liverelay", ref) for ref in servers if ref != "liverelay"
        }
    if args.api:
        from bench.api_load import run_api_benchmarks

        result["api"] = await run_api_benchmarks()
    result["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if Liverelay.source_dir is not None:
        shutil.rmtree(Liverelay.source_dir, ignore_errors=True)
        Liverelay.source_dir = None
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the ramp, write the JSON result and print the summary."""
    args = parse_args(argv)
    result = asyncio.run(main_async(args))
    out = write_result(result, args.out, "compare")
    print_summary(result)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
