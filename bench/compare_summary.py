"""A ``bench.compare`` step's numbers from what was observed during its window, and whether the
step was healthy (and if not, why)."""

from __future__ import annotations

from typing import Any

from bench import procstat
from bench.common import median
from bench.load import StreamProbe
from bench.servers import SEGMENT_SECONDS, Server

REALTIME_MIN = 0.95
"""A publisher keeps real time when it sent at least this many media seconds per wall second."""


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
    """The step's record: its numbers over the window ``(w0, w1)`` and ``ok`` with the
    ``failures`` that made it unhealthy (see docs/performance.md, "Healthy step")."""
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
