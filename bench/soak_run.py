"""The soak's steps in order: start the service and its publishers, wait until every stream
lists a segment, measure for ``--minutes`` under API load, stop the publishers and check that the
service drains, then SIGTERM it and look for orphans. Returns the JSON result."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import procstat
from bench.common import REPO_DIR, ffmpeg_exe, source_clip
from bench.load import Publisher
from bench.servers import extract_ref
from bench.soak_load import API_TIMEOUT, ApiLoad, Stream, check_closed, create_streams, wait_listed
from bench.soak_probes import HEALTHZ_TIMEOUT, HealthProber, JitterProbe
from bench.soak_report import print_sample
from bench.soak_sample import CpuMeter, mb, take_sample
from bench.soak_service import Service
from bench.soak_summary import (
    count_errors,
    slow_probes,
    summarize_api,
    summarize_healthz,
    summarize_memory,
    summarize_publishers,
)

READY_TIMEOUT = 60.0
"""Seconds for every playlist to list a segment before the soak window starts."""


def _git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", "-C", str(REPO_DIR), *args], capture_output=True, text=True, timeout=30
        )
        return result.stdout.strip()

    dirty = [line for line in git("status", "--porcelain").splitlines() if line]
    return {"head": git("rev-parse", "HEAD"), "dirty_paths": len(dirty)}


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    """Run the whole soak described by ``args``; the result, with its ``errors``."""
    duration = args.minutes * 60.0
    warmup = min(args.warmup_seconds, duration / 4)
    ffmpeg = ffmpeg_exe()
    source = source_clip()
    source_dir: Path | None = None
    sha: str | None = None
    if args.ref:
        source_dir, sha = extract_ref(args.ref)
    workdir = Path(tempfile.mkdtemp(prefix="liverelay-soak-"))
    (workdir / "publishers").mkdir()
    service = Service(workdir, publishers=args.publishers, source_dir=source_dir)
    result: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": procstat.machine(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "liverelay": {"ref": args.ref, "commit": sha} if args.ref else _git_state(),
        "settings": {
            k: v
            for k, v in service.env.items()
            if k.startswith("LIVERELAY_") and k != "LIVERELAY_DATA_DIR"
        },
        "workdir": str(workdir),
        "ffmpeg": ffmpeg,
        "source": str(source),
        "warmup_seconds": warmup,
    }
    streams: list[Stream] = []
    watchers: list[HealthProber | JitterProbe] = []
    try:
        streams = await _start(service, args.publishers, ffmpeg, source, result)
        timeout = aiohttp.ClientTimeout(total=API_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            result["never_started"] = await wait_listed(http, streams, READY_TIMEOUT)
            t0 = time.monotonic()
            prober = HealthProber(service.http_port, deadline=t0 + duration + 120)
            jitter = JitterProbe(deadline=t0 + duration + 120)
            watchers += [prober, jitter]
            prober.start()
            jitter.start()
            samples, api, soak_end = await _measure(
                http, service, streams, args, t0, prober, jitter, warmup
            )
            result["samples"] = samples
            result["api"] = summarize_api(api)
            result["healthz"] = summarize_healthz(prober, t0, soak_end)
            result["healthz"]["slow_probes"] = slow_probes(prober, jitter, t0, soak_end)
            result["publishers"] = summarize_publishers(streams, t0, soak_end)
            result["drain"] = await _drain(http, service, streams, args.drain_seconds)
            result["orphans_before_exit"] = [
                o for o in procstat.ffmpeg_mentioning(service.data_dir) if o["ppid"] != service.pid
            ]
            prober.stop_event.set()
            prober.join(HEALTHZ_TIMEOUT + 2)
            jitter.stop_event.set()

        _say("SIGTERM to the service ...")
        result["shutdown"] = await service.terminate(args.term_seconds)
        await asyncio.sleep(1.0)
        result["orphans_after_exit"] = procstat.ffmpeg_mentioning(service.data_dir)
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["server_log_tail"] = service.log_tail(30)
        print(f"soak aborted: {result['error']}", file=sys.stderr, flush=True)
    finally:
        for watcher in watchers:
            watcher.stop_event.set()
        await _clean_up(service, streams, args, result)
        if args.keep:
            result["kept"] = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        if source_dir is not None:
            shutil.rmtree(source_dir, ignore_errors=True)
    result["streams"] = [
        {
            "id": s.id,
            "stalls_at_s": s.stalls,
            "fetch_errors": s.fetch_errors[:10],
            "segment_errors": s.segment_errors[:10],
            "discontinuities": s.discontinuities,
            "died_at_s": s.died_at,
            "died_code": s.died_code,
        }
        for s in streams
    ]
    result["errors"] = count_errors(result, streams)
    result["memory"] = summarize_memory(result.get("samples", []), warmup)
    return result


async def _start(
    service: Service, count: int, ffmpeg: str, source: Path, result: dict[str, Any]
) -> list[Stream]:
    """The service, ``count`` streams, the idle baseline, then one publisher per stream."""
    await service.start()
    result["service_pid"] = service.pid
    assert service.token is not None
    streams = await create_streams(service, count)
    idle_mem = procstat.mem_sample([service.pid])
    result["idle"] = {
        "tree_rss_mb": mb(idle_mem.rss_kb),
        "tree_pss_mb": mb(idle_mem.pss_kb),
        "fds": procstat.open_fds(service.pid, service.ports),
        "threads": procstat.threads(service.pid),
    }
    _say(f"service pid {service.pid} up; {len(streams)} streams; starting publishers ...")
    for i, stream in enumerate(streams):
        stream.publisher = Publisher(
            ffmpeg, source, stream.upstream_url, service.workdir / "publishers" / f"{i}.log"
        )
        await stream.publisher.start()
        await asyncio.sleep(0.2)
    return streams


async def _measure(
    http: aiohttp.ClientSession,
    service: Service,
    streams: list[Stream],
    args: argparse.Namespace,
    t0: float,
    prober: HealthProber,
    jitter: JitterProbe,
    warmup: float,
) -> tuple[list[dict[str, Any]], ApiLoad, float]:
    """The soak window from ``t0``: API load, and a sample every ``--sample-seconds``. Returns
    the samples, the API load, and when the window ended."""
    duration = args.minutes * 60.0
    assert service.token is not None
    api = ApiLoad(service.base_url, service.token, [s.id for s in streams], args.api_rps)
    api_task = asyncio.create_task(api.run(duration))
    samples: list[dict[str, Any]] = []
    pub_pids = [s.publisher.proc.pid for s in streams if s.publisher and s.publisher.proc]
    meter = CpuMeter(service.pid, pub_pids)
    _say(
        f"soak window {duration:.0f} s "
        f"(warm-up {warmup:.0f} s), sampling every {args.sample_seconds:g} s"
    )
    sample_count = int(duration // args.sample_seconds) + 1
    for k in range(sample_count):
        delay = t0 + k * args.sample_seconds - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        at = time.monotonic() - t0
        sample = await take_sample(http, service, streams, at)
        sample["cpu_pct_one_core"] = meter.take()
        window = [lat for _, lat, _ in prober.samples[-int(args.sample_seconds) :] if lat]
        sample["healthz_ms_last_window_max"] = max(window) if window else None
        sample["bench_wakeup_late_ms_window_max"] = jitter.take_window_max()
        sample["api_sent"] = api.sent
        sample["api_non_2xx"] = api.non_2xx()
        samples.append(sample)
        print_sample(sample, len(streams))
    await asyncio.wait_for(api_task, API_TIMEOUT + 30)
    return samples, api, time.monotonic()


async def _drain(
    http: aiohttp.ClientSession, service: Service, streams: list[Stream], seconds: float
) -> dict[str, Any]:
    """Stop the publishers; the service must end every output by itself within ``seconds``."""
    _say("stopping publishers ...")
    await asyncio.gather(*(s.publisher.stop() for s in streams if s.publisher))
    stopped_at = time.monotonic()
    drain_deadline = stopped_at + seconds
    gone_after: float | None = None
    while time.monotonic() < drain_deadline:
        if not [p for p in procstat.descendants(service.pid) if p.comm.startswith("ffmpeg")]:
            gone_after = time.monotonic() - stopped_at
            break
        await asyncio.sleep(0.5)
    left = procstat.descendants(service.pid)
    return {
        "seconds_until_no_ffmpeg_child": gone_after,
        "children_left": [{"pid": p.pid, "comm": p.comm, "state": p.state} for p in left],
        "zombies_left": [p.pid for p in left if p.state == "Z"],
        "playlists": await check_closed(http, service, streams),
        "after": await take_sample(http, service, streams, None),
    }


async def _clean_up(
    service: Service, streams: list[Stream], args: argparse.Namespace, result: dict[str, Any]
) -> None:
    """Whatever happened: stop the publishers and the service, kill what this run left behind,
    and read the server log."""
    for stream in streams:
        if stream.publisher is not None:
            with contextlib.suppress(Exception):
                await stream.publisher.stop()
    if service.proc is not None and service.proc.returncode is None:
        result.setdefault("shutdown", await service.terminate(args.term_seconds))
    # anything left behind mentioning our data dir was started (indirectly) by this run
    for orphan in procstat.ffmpeg_mentioning(service.data_dir):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(orphan["pid"], signal.SIGKILL)
    result["server_log"] = service.log_levels()
