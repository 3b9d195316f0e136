"""What a soak samples every ``--sample-seconds``: the service's memory, descriptors, threads,
children and zombies (from /proc), its ``/metrics``, its viewers' checks, and CPU shares since the
previous sample."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import aiohttp

from bench import procstat
from bench.load import get
from bench.soak_load import Stream, check_playlist
from bench.soak_service import Service


def mb(kb: int) -> float:
    """kB -> MB."""
    return kb / 1024


def parse_metrics(text: str) -> dict[str, float]:
    """Sum of each metric family's samples, plus ``liverelay_output_state`` by state and
    ``liverelay_rtmp_rejects`` by reason."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("liverelay_"):
            continue
        name_labels, _, value = line.rpartition(" ")
        try:
            number = float(value)
        except ValueError:
            continue
        name = name_labels.split("{", 1)[0]
        if name.endswith("_created") or name.startswith("liverelay_http_request_duration"):
            continue
        if name == "liverelay_output_state":
            if number == 1.0 and 'state="' in name_labels:
                state = name_labels.split('state="', 1)[1].split('"', 1)[0]
                key = f"output_state:{state}"
                sums[key] = sums.get(key, 0) + 1
            continue
        if name.startswith("liverelay_rtmp_rejects") and 'reason="' in name_labels:
            reason = name_labels.split('reason="', 1)[1].split('"', 1)[0]
            key = f"rtmp_rejects:{reason}"
            sums[key] = sums.get(key, 0) + number
            continue
        sums[name] = sums.get(name, 0) + number
    return sums


async def take_sample(
    http: aiohttp.ClientSession,
    service: Service,
    streams: list[Stream],
    at: float | None,
) -> dict[str, Any]:
    """The service's state now; with ``at`` (seconds into the soak) also the publishers and
    every stream's playlist check."""
    pid = service.pid
    tree = procstat.mem_sample([pid])
    rss, pss = procstat.own_memory(pid)
    below = procstat.descendants(pid)
    sample: dict[str, Any] = {
        "t_s": round(at, 1) if at is not None else None,
        "tree_rss_mb": mb(tree.rss_kb),
        "tree_pss_mb": mb(tree.pss_kb),
        "python_rss_mb": mb(rss),
        "python_pss_mb": mb(pss),
        "fds": procstat.open_fds(pid, service.ports),
        "threads": procstat.threads(pid),
        "children": len([p for p in below if p.ppid == pid]),
        "ffmpeg_children": len([p for p in below if p.comm.startswith("ffmpeg")]),
        "zombies": [{"pid": p.pid, "comm": p.comm} for p in below if p.state == "Z"],
    }
    started = time.perf_counter()
    try:
        status, body = await get(http, service.metrics_url)
        sample["metrics_ms"] = (time.perf_counter() - started) * 1000
        sample["metrics"] = parse_metrics(body.decode(errors="replace")) if status == 200 else {}
    except (aiohttp.ClientError, TimeoutError) as exc:
        sample["metrics"] = {"error": type(exc).__name__}
    if at is not None:
        alive = 0
        for stream in streams:
            publisher = stream.publisher
            if publisher is not None and publisher.proc is not None:
                if publisher.alive:
                    alive += 1
                elif stream.died_at is None:
                    stream.died_at = at
                    stream.died_code = publisher.proc.returncode
        # the first check of a stream sets its baseline (counts as advanced when it lists one)
        results = await asyncio.gather(*(check_playlist(http, s, at) for s in streams))
        sample["playlists_advanced"] = sum(1 for r in results if r)
        sample["publishers_alive"] = alive
    return sample


class CpuMeter:
    """CPU of the service's tree, of its Python process, of the publishers and of this bench
    process, and the machine's busy time, each between two calls of :meth:`take`."""

    def __init__(self, service_pid: int, publisher_pids: list[int]) -> None:
        self.service_pid = service_pid
        self.publisher_pids = publisher_pids
        self.nproc = len(os.sched_getaffinity(0))
        self._prev = self._now()

    def _now(
        self,
    ) -> tuple[procstat.CpuSample, procstat.CpuSample, procstat.SystemCpu, procstat.CpuSample]:
        return (
            procstat.cpu_sample([self.service_pid]),
            procstat.cpu_sample(self.publisher_pids),
            procstat.system_cpu(),
            procstat.cpu_sample([os.getpid()]),
        )

    def take(self) -> dict[str, float]:
        """% of one core since the previous call (``machine_busy_pct_all_cores``: of all cores)."""
        now = self._now()
        (cpu_prev, pub_cpu_prev, sys_prev, self_prev) = self._prev
        (cpu_now, pub_cpu_now, sys_now, self_now) = now
        self._prev = now
        cpu = {
            "tree": procstat.cpu_percent(cpu_prev, cpu_now),
            "python": procstat.root_cpu_percent(cpu_prev, cpu_now),
            "publishers": procstat.cpu_percent(pub_cpu_prev, pub_cpu_now),
            "bench": procstat.root_cpu_percent(self_prev, self_now),
            "machine_busy_pct_all_cores": procstat.system_busy_percent(sys_prev, sys_now),
        }
        # whatever else ran on the machine meanwhile (a shared machine skews latencies)
        cpu["other"] = max(
            0.0,
            cpu["machine_busy_pct_all_cores"] * self.nproc
            - cpu["tree"]
            - cpu["publishers"]
            - cpu["bench"],
        )
        return cpu
