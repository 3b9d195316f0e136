"""Where liverelay's Python CPU goes under N publishers: py-spy samples the ``liverelay serve``
process during the measuring window of one step, then this prints the top functions by own
(self) and inclusive samples and the top files.

    python -m bench.profile --streams 16 --seconds 20 [--svg]

Needs py-spy (``pip install py-spy``) and root (or ptrace permission). Output:
bench/results/profile-<N>.txt (the collapsed stacks: profile-<N>.folded; with --svg also a
flame graph). CPU numbers of a profiled step are inflated by the sampling; take them from
``bench.compare``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import re
import shutil
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, ffmpeg_exe, source_clip, venv_exe
from bench.compare_step import run_step
from bench.compare_tables import table
from bench.servers import Liverelay, Server, extract_ref

_WAITS = {"wait", "_worker"}  # threading.Condition.wait / idle ThreadPoolExecutor workers
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")


def py_spy() -> str:
    """The py-spy binary of this venv (or on PATH)."""
    return venv_exe("py-spy", "py-spy not found: pip install py-spy")


def _short_file(path: str) -> str:
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    for top in ("/ingest/", "/workers/", "/api/", "/config/"):
        if top in path:
            return top.strip("/") + "/" + path.split(top, 1)[1]
    return path


def _frame_key(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip(), "?"
    return m["func"], _short_file(m["file"])


def summarize_folded(text: str, top: int = 25) -> str:
    own: Counter[tuple[str, str]] = Counter()
    inclusive: Counter[tuple[str, str]] = Counter()
    files: Counter[str] = Counter()
    total = 0
    waiting = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [
            f
            for f in stack.split(";")
            if f and not f.startswith("process ") and not f.startswith("thread ")
        ]
        if not frames:
            continue
        leaf = _frame_key(frames[-1])
        if leaf[0].endswith("Selector.select") or leaf[0] in _WAITS:
            waiting += count  # the event loop (or a pool thread) waiting: idle, not CPU
            continue
        total += count
        own[leaf] += count
        files[leaf[1]] += count
        for key in {_frame_key(f) for f in frames}:
            inclusive[key] += count
    if not total:
        return "no samples"
    head = [
        f"{total} busy samples ({waiting} more were the event loop or a pool thread "
        "waiting, left out)",
        "",
    ]

    def block(title: str, counter: Counter[Any], label: Any) -> list[str]:
        rows = [f"{title} (of {total} samples)"]
        for key, count in counter.most_common(top):
            rows.append(f"  {100.0 * count / total:5.1f}%  {label(key)}")
        return rows

    out = head + block("own time by function", own, lambda k: f"{k[0]}  ({k[1]})")
    out += ["", *block("own time by file", files, str)]
    out += ["", *block("inclusive time by function", inclusive, lambda k: f"{k[0]}  ({k[1]})")]
    return "\n".join(out)


def summarize_cprofile(path: Path, top: int) -> str:
    """Top functions by own CPU time (tottime) and by inclusive CPU time (cumtime)."""
    stats = pstats.Stats(str(path))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, tt, _, _) in raw.values()) or 1.0

    def name(key: tuple[str, int, str]) -> str:
        file, line, func = key
        return f"{func}  ({_short_file(file)}:{line})" if file != "~" else func

    lines = [f"total own CPU time profiled: {total:.2f} s", "", "own CPU time (tottime)"]
    by_own = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    for key, (_, calls, tt, _, _) in by_own:
        lines.append(f"  {100 * tt / total:5.1f}%  {tt:7.3f} s  {calls:>9} calls  {name(key)}")
    lines += ["", "inclusive CPU time (cumtime)"]
    by_cum = sorted(raw.items(), key=lambda kv: kv[1][3], reverse=True)[:top]
    for key, (_, calls, _, ct, _) in by_cum:
        lines.append(f"  {100 * ct / total:5.1f}%  {ct:7.3f} s  {calls:>9} calls  {name(key)}")
    return "\n".join(lines)


async def profile(args: argparse.Namespace) -> int:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    folded = RESULTS_DIR / f"profile-{args.streams}.folded"
    svg = RESULTS_DIR / f"profile-{args.streams}.svg"
    report = RESULTS_DIR / f"profile-{args.streams}.txt"
    spy = py_spy()
    duration = max(1, round(args.seconds))

    prof_path = RESULTS_DIR / f"cprofile-{args.streams}.prof"
    cprofile_report = RESULTS_DIR / f"cprofile-{args.streams}.txt"

    async def cprofile_window(server: Server, seconds: float) -> dict[str, Any]:
        pid = server.root_pids[0]
        prof_path.unlink(missing_ok=True)
        os.kill(pid, signal.SIGUSR1)
        await asyncio.sleep(seconds)
        os.kill(pid, signal.SIGUSR2)
        for _ in range(100):
            if prof_path.exists() and prof_path.stat().st_size > 0:
                await asyncio.sleep(0.5)
                break
            await asyncio.sleep(0.1)
        return {}

    async def record(server: Server, seconds: float) -> dict[str, Any]:
        pid = str(server.root_pids[0])
        base = [
            spy,
            "record",
            "--nonblocking",
            "-r",
            str(args.rate),
            "-d",
            str(duration),
            "--pid",
            pid,
        ]
        runs = [[*base, "--format", "raw", "-o", str(folded)]]
        if args.svg:
            runs.append([*base, "--format", "flamegraph", "-o", str(svg)])
        procs = [
            await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
            for argv in runs
        ]
        errors = []
        for proc in procs:
            _, err = await asyncio.wait_for(proc.communicate(), duration + 60)
            if proc.returncode != 0:
                errors.append(err.decode(errors="replace")[-500:])
        return {"py_spy_errors": errors} if errors else {}

    if args.mode == "cprofile":
        Liverelay.serve_argv = [sys.executable, "-m", "bench.cprofile_serve", str(prof_path)]
    if args.liverelay_ref:
        src_dir, sha = extract_ref(args.liverelay_ref)
        Liverelay.source_dir = src_dir
        print(f"liverelay from commit {sha}", flush=True)
    try:
        step = await run_step(
            "liverelay",
            args.streams,
            seconds=args.seconds,
            source=source_clip(),
            ffmpeg=ffmpeg_exe(),
            startup_timeout=args.startup_timeout,
            poll_interval=2.0,
            keep=False,
            on_window=cprofile_window if args.mode == "cprofile" else record,
        )
    finally:
        if Liverelay.source_dir is not None:
            shutil.rmtree(Liverelay.source_dir, ignore_errors=True)
    print(table([step]))
    if args.mode == "cprofile":
        if not prof_path.exists():
            print("no profile written", file=sys.stderr)
            return 1
        text = summarize_cprofile(prof_path, args.top)
        header = (
            f"cProfile (CPU-time clock) of liverelay serve, {args.streams} publishers, "
            f"{args.seconds:g} s ({time.strftime('%Y-%m-%d %H:%M')})\n"
        )
        cprofile_report.write_text(header + "\n" + text + "\n")
        print()
        print(header)
        print(text)
        print(f"\nwrote {cprofile_report} and {prof_path}")
        return 0
    if step.get("py_spy_errors"):
        print("py-spy failed:", *step["py_spy_errors"], sep="\n")
        return 1
    if not folded.exists():
        print("no profile written", file=sys.stderr)
        return 1
    summary = summarize_folded(folded.read_text(), args.top)
    header = (
        f"py-spy profile of liverelay serve, {args.streams} publishers, {duration} s at "
        f"{args.rate} Hz ({time.strftime('%Y-%m-%d %H:%M')})\n"
        "(CPU of this step is inflated by sampling; see bench.compare for CPU numbers)\n"
    )
    report.write_text(header + "\n" + summary + "\n")
    print()
    print(header)
    print(summary)
    print(f"\nwrote {report} and {folded}" + (f" and {svg}" if args.svg else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--startup-timeout", type=float, default=30.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--svg", action="store_true", help="also record a flame graph SVG")
    parser.add_argument("--liverelay-ref", default=None, help="profile this git commit")
    parser.add_argument(
        "--mode",
        choices=("py-spy", "cprofile"),
        default="py-spy",
        help="py-spy: sampling, wall clock (a thread waiting for a core counts as busy); "
        "cprofile: deterministic, CPU-time clock",
    )
    args = parser.parse_args(argv)
    return asyncio.run(profile(args))


if __name__ == "__main__":
    raise SystemExit(main())
