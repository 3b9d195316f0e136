"""A soak's verdict: summaries of the API load, /healthz, the publishers and memory growth, and
the count of every kind of error (the exit status is 0 only when they are all zero)."""

from __future__ import annotations

from typing import Any

from bench.common import percentile
from bench.soak_load import ApiLoad, Stream
from bench.soak_probes import HealthProber, JitterProbe

REALTIME_MIN = 0.97
"""A publisher keeps real time when it sent at least this many media seconds per wall second."""


def _slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    if sxx == 0:
        return None
    sxy = sum((p[0] - mx) * (p[1] - my) for p in points)
    return sxy / sxx * 60


def summarize_api(api: ApiLoad) -> dict[str, Any]:
    """Requests, statuses and latency percentiles, overall and per operation."""
    all_ms = [v for values in api.latencies.values() for v in values]
    out: dict[str, Any] = {
        "sent": api.sent,
        "skipped": api.skipped,
        "statuses": api.statuses,
        "non_2xx_or_failed": api.non_2xx(),
        "errors": api.errors,
        "all": {
            "p50_ms": percentile(all_ms, 50),
            "p99_ms": percentile(all_ms, 99),
            "max_ms": max(all_ms) if all_ms else None,
        },
    }
    for op, values in api.latencies.items():
        out[op] = {
            "count": len(values),
            "p50_ms": percentile(values, 50),
            "p99_ms": percentile(values, 99),
            "max_ms": max(values) if values else None,
        }
    return out


def summarize_healthz(prober: HealthProber, start: float, end: float) -> dict[str, Any]:
    """/healthz probes between ``start`` and ``end``: failures and latency percentiles."""
    values = prober.latencies(start, end)
    return {
        "probes": len([s for s in prober.samples if start <= s[0] <= end]),
        "failures": [
            {"t_s": round(t - start, 1), "outcome": o}
            for t, o in prober.failures()
            if start <= t <= end
        ],
        "p50_ms": percentile(values, 50),
        "p99_ms": percentile(values, 99),
        "max_ms": max(values) if values else None,
        "over_100ms": len([v for v in values if v > 100]),
    }


def slow_probes(
    prober: HealthProber, jitter: JitterProbe, start: float, end: float
) -> dict[str, Any]:
    """/healthz probes over 100 ms, and how many of them had the bench itself waking up more
    than 50 ms late within 2 s of the probe (the machine, not the service, was stalled)."""
    slow = [(t, lat) for t, lat, _ in prober.samples if lat and lat > 100 and start <= t <= end]
    with_host_stall = [
        (t, lat) for t, lat in slow if any(abs(t - lt) <= 2.0 for lt, _ in jitter.late)
    ]
    return {
        "count": len(slow),
        "with_bench_wakeup_late": len(with_host_stall),
        "bench_late_wakeups": len([1 for t, _ in jitter.late if start <= t <= end]),
        "bench_late_max_ms": max((ms for t, ms in jitter.late if start <= t <= end), default=None),
        "probes": [{"t_s": round(t - start, 1), "ms": round(lat, 1)} for t, lat in slow[:100]],
    }


def summarize_publishers(streams: list[Stream], start: float, end: float) -> dict[str, Any]:
    """How well the publishers kept real time between ``start`` and ``end``."""
    ratios = []
    for stream in streams:
        if stream.publisher is not None:
            ratio = stream.publisher.realtime_ratio(start, end)
            if ratio is not None:
                ratios.append(ratio)
    return {
        "count": len(streams),
        "realtime_min": min(ratios) if ratios else None,
        "realtime_median": percentile(ratios, 50),
        "below_realtime": len([r for r in ratios if r < REALTIME_MIN]),
    }


def summarize_memory(samples: list[dict[str, Any]], warmup: float) -> dict[str, Any]:
    """Memory, descriptors and threads from the first sample after ``warmup`` to the last."""
    steady = [s for s in samples if s.get("t_s") is not None and s["t_s"] >= warmup]
    if len(steady) < 2:
        return {}
    first, last = steady[0], steady[-1]
    out: dict[str, Any] = {"from_t_s": first["t_s"], "to_t_s": last["t_s"]}
    for key in ("tree_rss_mb", "tree_pss_mb", "python_rss_mb", "python_pss_mb"):
        out[key] = {
            "first": first[key],
            "last": last[key],
            "growth": last[key] - first[key],
            "max": max(s[key] for s in steady),
            "slope_per_min": _slope_per_minute([(s["t_s"], s[key]) for s in steady]),
        }
    out["fds"] = {
        "first": first["fds"]["total"],
        "last": last["fds"]["total"],
        "max": max(s["fds"]["total"] for s in steady),
    }
    out["threads"] = {
        "first": first["threads"],
        "last": last["threads"],
        "max": max(s["threads"] or 0 for s in steady),
    }
    return out


def count_errors(result: dict[str, Any], streams: list[Stream]) -> dict[str, int]:
    """Every kind of error the run saw, and their ``total``."""
    drain = result.get("drain", {})
    shutdown = result.get("shutdown", {})
    samples = result.get("samples", [])
    errors = {
        "aborted": 1 if "error" in result else 0,
        "api_non_2xx_or_failed": result.get("api", {}).get("non_2xx_or_failed", 0),
        "playlists_never_started": len(result.get("never_started", [])),
        "playlist_stalls": sum(len(s.stalls) for s in streams),
        "segment_fetch_errors": sum(len(s.segment_errors) for s in streams),
        "publishers_died": len([s for s in streams if s.died_at is not None]),
        "healthz_failures": len(result.get("healthz", {}).get("failures", [])),
        "zombie_samples": sum(1 for s in samples if s.get("zombies")),
        "ffmpeg_children_after_drain": len(
            [c for c in drain.get("children_left", []) if c["comm"].startswith("ffmpeg")]
        ),
        "playlists_not_closed": len(drain.get("playlists", {}).get("still_open", [])),
        "orphans": len(result.get("orphans_before_exit", []))
        + len(result.get("orphans_after_exit", [])),
        "exit_not_zero_in_time": 0
        if shutdown.get("exit_code") == 0 and not shutdown.get("killed")
        else 1,
    }
    errors["total"] = sum(errors.values())
    return errors
