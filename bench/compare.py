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
import contextlib
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import procstat
from bench.common import RESULTS_DIR, ffmpeg_exe, fmt, median, source_clip
from bench.load import (
    Publisher,
    StreamProbe,
    check_final,
    view,
    wait_first_playable,
    watch_disk,
)
from bench.servers import (
    SEGMENT_SECONDS,
    Liverelay,
    Nginx,
    NodeMediaServer,
    Server,
    extract_ref,
)

SERVERS = ("liverelay", "nginx", "nms")
REALTIME_MIN = 0.95
"""A publisher keeps real time when it sent at least this many media seconds per wall second."""


def make_server(name: str, workdir: Path, ffmpeg: str) -> Server:
    if name == "liverelay":
        return Liverelay(workdir)
    if name == "nginx":
        return Nginx(workdir)
    if name == "nms":
        return NodeMediaServer(workdir, ffmpeg=ffmpeg)
    raise ValueError(name)


def unavailable(name: str) -> str | None:
    if name == "nginx":
        return Nginx.available()
    if name == "nms":
        return NodeMediaServer.available()
    return None


async def run_step(
    server_name: str,
    n: int,
    *,
    seconds: float,
    source: Path,
    ffmpeg: str,
    startup_timeout: float,
    poll_interval: float,
    keep: bool,
    on_window: Any = None,
) -> dict[str, Any]:
    """One server, N publishers, one measuring window. Returns the step's record."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{server_name}-{n}-"))
    server = make_server(server_name, workdir, ffmpeg)
    record: dict[str, Any] = {"server": server_name, "streams": n, "seconds": seconds}
    publishers: list[Publisher] = []
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    try:
        await server.start()
        await asyncio.sleep(1.0)
        idle = procstat.mem_sample(server.root_pids)
        targets = await server.create_streams(n)
        log_path = workdir / "publishers.log"
        probes: list[StreamProbe] = []
        for target in targets:
            publisher = Publisher(ffmpeg, source, target.publish_url, log_path)
            publishers.append(publisher)
            probes.append(StreamProbe(target, publisher))
        for publisher in publishers:
            await publisher.start()
        started = time.monotonic()
        tasks.append(asyncio.create_task(watch_disk(probes, stop, 0.1)))
        timeout = aiohttp.ClientTimeout(total=10)
        connector = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            deadline = started + startup_timeout
            await asyncio.gather(*(wait_first_playable(http, p, deadline) for p in probes))
            startup_done = time.monotonic()
            not_playable = sum(p.first_playable_at is None for p in probes)
            # the measuring window
            tasks += [asyncio.create_task(view(http, p, stop, poll_interval)) for p in probes]
            await asyncio.sleep(0.5)
            cpu0 = procstat.cpu_sample(server.root_pids)
            pub0 = procstat.cpu_sample([p.proc.pid for p in publishers if p.proc])
            sys0 = procstat.system_cpu()
            self0 = os.times()
            w0 = time.monotonic()
            window_extra: dict[str, Any] = {}
            if on_window is not None:
                window_extra = await on_window(server, seconds) or {}
            else:
                await asyncio.sleep(seconds / 2)
                mem_mid = procstat.mem_sample(server.root_pids)
                await asyncio.sleep(seconds / 2)
            w1 = time.monotonic()
            cpu1 = procstat.cpu_sample(server.root_pids)
            pub1 = procstat.cpu_sample([p.proc.pid for p in publishers if p.proc])
            sys1 = procstat.system_cpu()
            self1 = os.times()
            mem_end = procstat.mem_sample(server.root_pids)
            if on_window is not None:
                mem_mid = mem_end
            await asyncio.gather(*(check_final(http, p) for p in probes))
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        record.update(
            summarize(
                probes,
                server=server,
                n=n,
                window=(w0, w1),
                startup=(started, startup_done),
                not_playable=not_playable,
                idle=idle,
                mem=[mem_mid, mem_end],
                cpu=(cpu0, cpu1),
                pub=(pub0, pub1),
                sysc=(sys0, sys1),
                bench_self=(self1.user + self1.system - self0.user - self0.system) / (w1 - w0),
            )
        )
        record.update(window_extra)
    except Exception as exc:  # a step that crashed is a failed step, with the reason
        record["ok"] = False
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["server_log_tail"] = server.log_tail()
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(p.stop() for p in publishers), return_exceptions=True)
        await server.stop()
        if not record.get("ok", False):
            record.setdefault("server_log_tail", server.log_tail())
        if keep:
            record["workdir"] = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return record


def summarize(
    probes: list[StreamProbe],
    *,
    server: Server,
    n: int,
    window: tuple[float, float],
    startup: tuple[float, float],
    not_playable: int,
    idle: procstat.MemSample,
    mem: list[procstat.MemSample],
    cpu: tuple[procstat.CpuSample, procstat.CpuSample],
    pub: tuple[procstat.CpuSample, procstat.CpuSample],
    sysc: tuple[procstat.SystemCpu, procstat.SystemCpu],
    bench_self: float,
) -> dict[str, Any]:
    w0, w1 = window
    length = w1 - w0
    first_playable = [p.first_playable_at - p.t0 for p in probes if p.first_playable_at]
    first_listed = [p.first_listed_at - p.t0 for p in probes if p.first_listed_at]
    delays = [d for p in probes for (t, d) in p.edge_delays if w0 <= t <= w1]
    behind = [
        sent - listed
        for p in probes
        for (t, listed) in p.edge_listed
        if w0 <= t <= w1 and (sent := p.publisher.sent_at(t)) is not None
    ]
    advanced = [p.media_appeared_between(w0, w1) for p in probes]
    min_advance = length - 2 * SEGMENT_SECONDS
    realtime = [p.publisher.realtime_ratio(w0, w1) for p in probes]
    stale = [
        p
        for p in probes
        if p.last_appeared_at() is None or w1 - (p.last_appeared_at() or 0) > 3 * SEGMENT_SECONDS
    ]
    failures: list[str] = []
    if not_playable:
        failures.append(f"{not_playable} stream(s) never became playable")
    slow = sum(a < min_advance for a in advanced)
    if slow:
        failures.append(f"{slow} playlist(s) advanced < {min_advance:.0f} s in {length:.0f} s")
    if stale:
        failures.append(f"{len(stale)} playlist(s) stale at the end of the window")
    not_rt = sum(r is None or r < REALTIME_MIN for r in realtime)
    if not_rt:
        failures.append(f"{not_rt} publisher(s) below {REALTIME_MIN}x real time")
    dead = sum(not p.publisher.alive for p in probes)
    if dead:
        failures.append(f"{dead} publisher(s) exited")
    bad_final = [p for p in probes if not p.final_segment_ok]
    if bad_final:
        reasons = sorted({p.final_error or "?" for p in bad_final})[:3]
        failures.append(
            f"{len(bad_final)} stream(s): newest segment did not download at the end "
            f"({'; '.join(reasons)})"
        )
    http_errors = sum(p.http_errors for p in probes)
    http_polls = sum(p.http_polls for p in probes)
    if http_polls and http_errors > 0.02 * http_polls:
        failures.append(f"{http_errors}/{http_polls} playlist reloads failed")
    cpu_pct = procstat.cpu_percent(*cpu)
    mem_end = mem[-1]
    peak_pss = max(m.pss_kb for m in mem)
    peak_rss = max(m.rss_kb for m in mem)
    rt_values = [r for r in realtime if r is not None]
    return {
        "ok": not failures,
        "failures": failures,
        "window_seconds": round(length, 2),
        "startup_seconds": round(startup[1] - startup[0], 2),
        "first_playable_s": {
            "median": median(first_playable),
            "max": max(first_playable) if first_playable else None,
        },
        "first_listed_on_disk_s": {
            "median": median(first_listed),
            "max": max(first_listed) if first_listed else None,
        },
        "live_edge_delay_s": {
            "median": median(delays),
            "max": max(delays) if delays else None,
            "samples": len(delays),
        },
        "edge_behind_publisher_s": {
            "median": median(behind),
            "max": max(behind) if behind else None,
        },
        "media_advanced_s": {"min": min(advanced), "median": median(advanced)},
        "publisher_realtime": {
            "min": min(rt_values) if rt_values else None,
            "median": median(rt_values),
        },
        "cpu_pct_one_core": {
            "total": cpu_pct,
            "per_stream": cpu_pct / n,
            "server_process_alone": procstat.root_cpu_percent(*cpu),
            "server_process_alone_kernel": procstat.root_sys_cpu_percent(*cpu),
            "children": cpu_pct - procstat.root_cpu_percent(*cpu),
        },
        "tree_processes": cpu[1].processes,
        "memory_mb": {
            "idle_rss": idle.rss_kb / 1024,
            "idle_pss": idle.pss_kb / 1024,
            "rss": mem_end.rss_kb / 1024,
            "pss": mem_end.pss_kb / 1024,
            "peak_rss": peak_rss / 1024,
            "peak_pss": peak_pss / 1024,
            "rss_per_stream": peak_rss / 1024 / n,
            "pss_per_stream": peak_pss / 1024 / n,
            "pss_marginal_per_stream": (peak_pss - idle.pss_kb) / 1024 / n,
            "pss_by_command_at_end": {
                name: kb / 1024 for name, kb in mem_end.pss_kb_by_command.items()
            },
        },
        "publishers_cpu_pct_one_core": procstat.cpu_percent(*pub),
        "bench_process_cpu_pct_one_core": 100.0 * bench_self,
        "machine_busy_pct_all_cores": procstat.system_busy_percent(*sysc),
        "other_processes_cpu_pct_one_core": procstat.system_busy_percent(*sysc)
        * (procstat.machine()["nproc"] or 1)  # type: ignore[operator]
        - cpu_pct
        - procstat.cpu_percent(*pub)
        - 100.0 * bench_self,
        "http_playlist_reloads": http_polls,
        "http_playlist_errors": http_errors,
    }


# -- reporting -----------------------------------------------------------------------------------

COLUMNS = [
    ("server", 9),
    ("N", 4),
    ("ok", 4),
    ("1st seg med/max s", 17),
    ("edge s", 6),
    ("CPU %", 7),
    ("CPU %/str", 9),
    ("main %", 6),
    ("RSS MB", 7),
    ("PSS MB", 7),
    ("PSS/str", 7),
    ("PSS+/str", 8),
    ("pub rt", 6),
    ("pubs CPU%", 9),
    ("busy %", 6),
    ("other %", 7),
]


def row(step: dict[str, Any]) -> list[str]:
    if "cpu_pct_one_core" not in step:
        return [step["server"], str(step["streams"]), "ERR", step.get("error", "")[:60]]
    fp, mem = step["first_playable_s"], step["memory_mb"]
    return [
        step["server"],
        str(step["streams"]),
        "yes" if step["ok"] else "NO",
        f"{fmt(fp['median'])}/{fmt(fp['max'])}",
        fmt(step["live_edge_delay_s"]["median"]),
        fmt(step["cpu_pct_one_core"]["total"], 1),
        fmt(step["cpu_pct_one_core"]["per_stream"], 2),
        fmt(step["cpu_pct_one_core"].get("server_process_alone"), 1),
        fmt(mem["peak_rss"], 0),
        fmt(mem["peak_pss"], 0),
        fmt(mem["pss_per_stream"], 1),
        fmt(mem["pss_marginal_per_stream"], 1),
        fmt(step["publisher_realtime"]["min"], 2),
        fmt(step["publishers_cpu_pct_one_core"], 0),
        fmt(step["machine_busy_pct_all_cores"], 0),
        fmt(step["other_processes_cpu_pct_one_core"], 0),
    ]


def table(steps: list[dict[str, Any]]) -> str:
    head = " | ".join(name.ljust(width) for name, width in COLUMNS)
    lines = [head, "-" * len(head)]
    for step in steps:
        cells = row(step)
        lines.append(" | ".join(c.ljust(w) for c, (_, w) in zip(cells, COLUMNS, strict=False)))
        if not step.get("ok", False) and step.get("failures"):
            lines.append("    failed: " + "; ".join(step["failures"]))
    return "\n".join(lines)


def capacity(steps: list[dict[str, Any]], server: str) -> dict[str, Any]:
    ours = [s for s in steps if s["server"] == server]
    passed = [s["streams"] for s in ours if s.get("ok")]
    failed = [s["streams"] for s in ours if not s.get("ok")]
    return {
        "largest_ok": max(passed) if passed else 0,
        "first_failed": min(failed) if failed else None,
        "tested": [s["streams"] for s in ours],
    }


def compare_to(steps: list[dict[str, Any]], ours: str, ref: str) -> dict[str, Any]:
    """Ratios ours/ref at N=1 and at the largest N both passed, and capacity ratio."""

    def step(server: str, n: int) -> dict[str, Any] | None:
        for s in steps:
            if s["server"] == server and s["streams"] == n and s.get("ok"):
                return s
        return None

    common = sorted(
        {s["streams"] for s in steps if s["server"] == ours and s.get("ok")}
        & {s["streams"] for s in steps if s["server"] == ref and s.get("ok")}
    )
    out: dict[str, Any] = {"reference": ref, "common_ok_n": common}
    for label, n in (("n1", 1), ("largest_common", common[-1] if common else None)):
        if n is None:
            continue
        a, b = step(ours, n), step(ref, n)
        if not a or not b:
            continue
        out[label] = {
            "n": n,
            "cpu_per_stream_ratio": _ratio(
                a["cpu_pct_one_core"]["per_stream"], b["cpu_pct_one_core"]["per_stream"]
            ),
            "first_playable_median_delta_s": _delta(
                a["first_playable_s"]["median"], b["first_playable_s"]["median"]
            ),
            "live_edge_delay_median_delta_s": _delta(
                a["live_edge_delay_s"]["median"], b["live_edge_delay_s"]["median"]
            ),
            "pss_per_stream_mb": a["memory_mb"]["pss_per_stream"],
            "pss_marginal_per_stream_mb": a["memory_mb"]["pss_marginal_per_stream"],
        }
    out["per_n"] = [
        {
            "n": n,
            "cpu_per_stream_ratio": _ratio(
                a["cpu_pct_one_core"]["per_stream"], b["cpu_pct_one_core"]["per_stream"]
            ),
            "machine_busy_pct": [a["machine_busy_pct_all_cores"], b["machine_busy_pct_all_cores"]],
        }
        for n in common
        if (a := step(ours, n)) and (b := step(ref, n))
    ]
    cap_a, cap_b = capacity(steps, ours), capacity(steps, ref)
    out["capacity"] = {ours: cap_a, ref: cap_b}
    out["capacity_ratio"] = _ratio(cap_a["largest_ok"], cap_b["largest_ok"])
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _delta(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
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
    args = parse_args(argv)
    result = asyncio.run(main_async(args))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS_DIR / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print()
    print(table(result["steps"]))
    print()
    for name, cap in result["capacity"].items():
        print(
            f"capacity {name}: largest healthy N = {cap['largest_ok']}"
            f" (first failed: {cap['first_failed']})"
        )
    for ref, vs in result.get("vs", {}).items():
        with contextlib.suppress(KeyError):
            shown = {k: v for k, v in vs.items() if k not in ("capacity", "per_n")}
            print(f"liverelay vs {ref}: {json.dumps(shown)}")
            per_n = ", ".join(
                f"N={r['n']}: {fmt(r['cpu_per_stream_ratio'])}x" for r in vs.get("per_n", [])
            )
            print(f"  CPU per stream, liverelay/{ref}: {per_n}")
    if "api" in result:
        from bench.api_load import api_table

        print()
        print(api_table(result["api"]))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
