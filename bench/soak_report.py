"""What a soak prints: one line per sample while it runs, and the summary at the end."""

from __future__ import annotations

import json
from typing import Any

from bench.common import fmt, percentile
from bench.soak_summary import REALTIME_MIN


def _fd_text(fds: dict[str, int]) -> str:
    named = ("socket_http", "socket_rtmp", "pipe", "database")
    other = fds.get("total", 0) - sum(fds.get(k, 0) for k in named)
    return (
        f"{fds.get('total')} (http {fds.get('socket_http', '-')}, "
        f"rtmp {fds.get('socket_rtmp', '-')}, pipe {fds.get('pipe')}, "
        f"db {fds.get('database')}, other {other})"
    )


def print_sample(sample: dict[str, Any], n: int) -> None:
    """One sample on one line (``n``: the number of streams)."""
    m = sample.get("metrics", {})
    cpu = sample.get("cpu_pct_one_core", {})
    print(
        f"  t={sample['t_s']:>6.0f}s tree RSS {sample['tree_rss_mb']:7.1f} "
        f"PSS {sample['tree_pss_mb']:7.1f} | py RSS {sample['python_rss_mb']:6.1f} "
        f"PSS {sample['python_pss_mb']:6.1f} MB | fds {_fd_text(sample['fds'])} "
        f"thr {sample['threads']} | children {sample['children']:3d} "
        f"zombies {len(sample['zombies'])} | advanced {sample.get('playlists_advanced')}/{n} "
        f"pubs {sample.get('publishers_alive')}/{n} | live {m.get('liverelay_live_streams', '-')} "
        f"restarts {m.get('liverelay_output_restarts_total', 0):g} "
        f"drops {m.get('liverelay_output_dropped_frames_total', 0):g} | "
        f"healthz max {fmt(sample.get('healthz_ms_last_window_max'), 1)} ms "
        f"(bench late {fmt(sample.get('bench_wakeup_late_ms_window_max'), 0)}) | "
        f"api {sample['api_sent']} non2xx {sample['api_non_2xx']} | "
        f"cpu py {fmt(cpu.get('python'), 0)}% tree {fmt(cpu.get('tree'), 0)}% "
        f"pubs {fmt(cpu.get('publishers'), 0)}% "
        f"other {fmt(cpu.get('other'), 0)}% "
        f"machine {fmt(cpu.get('machine_busy_pct_all_cores'), 0)}%",
        flush=True,
    )


def summary_text(result: dict[str, Any]) -> str:
    """The run's summary: errors, memory growth, descriptors, CPU, latencies, the drain, the
    exit, and the server log's warnings."""
    errors = result.get("errors", {})
    mem = result.get("memory", {})
    api = result.get("api", {})
    hz = result.get("healthz", {})
    pubs = result.get("publishers", {})
    drain = result.get("drain", {})
    shutdown = result.get("shutdown", {})
    samples = result.get("samples", [])
    lines = [
        f"soak: {result['args']['publishers']} publishers, {result['args']['minutes']} min "
        f"(warm-up {result['warmup_seconds']:.0f} s), liverelay {result['liverelay']}",
        f"ERRORS: {errors.get('total')}  "
        + ", ".join(f"{k}={v}" for k, v in errors.items() if k != "total" and v),
    ]
    if "error" in result:
        lines.append(f"aborted: {result['error']}")
    for key, label in (
        ("tree_rss_mb", "tree RSS"),
        ("tree_pss_mb", "tree PSS"),
        ("python_rss_mb", "python RSS"),
        ("python_pss_mb", "python PSS"),
    ):
        if key in mem:
            v = mem[key]
            lines.append(
                f"{label:<11} {v['first']:7.1f} MB (t={mem['from_t_s']:.0f}s) -> "
                f"{v['last']:7.1f} MB (t={mem['to_t_s']:.0f}s): growth {v['growth']:+.1f} MB, "
                f"slope {fmt(v['slope_per_min'], 2)} MB/min, max {v['max']:.1f}"
            )
    if samples:
        lines.append(f"fds        idle  {_fd_text(result['idle']['fds'])}")
        lines.append(f"           start {_fd_text(samples[0]['fds'])}")
        lines.append(f"           end   {_fd_text(samples[-1]['fds'])}")
        if drain.get("after"):
            lines.append(f"           after drain {_fd_text(drain['after']['fds'])}")
        lines.append(
            f"threads    idle {result['idle']['threads']}, start {samples[0]['threads']}, end "
            f"{samples[-1]['threads']}, after drain {drain.get('after', {}).get('threads', '-')}"
        )
        lines.append(
            f"children   {min(s['children'] for s in samples)}.."
            f"{max(s['children'] for s in samples)} during the soak; "
            f"zombies seen in {errors.get('zombie_samples', 0)} samples; "
            f"after drain {len(drain.get('children_left', []))} children "
            f"(no ffmpeg after {fmt(drain.get('seconds_until_no_ffmpeg_child'), 1)} s); "
            f"orphans {errors.get('orphans', 0)}"
        )
        cpu_py = [s["cpu_pct_one_core"]["python"] for s in samples[1:]]
        cpu_tree = [s["cpu_pct_one_core"]["tree"] for s in samples[1:]]
        cpu_pub = [s["cpu_pct_one_core"]["publishers"] for s in samples[1:]]
        busy = [s["cpu_pct_one_core"]["machine_busy_pct_all_cores"] for s in samples[1:]]
        other = [s["cpu_pct_one_core"]["other"] for s in samples[1:]]
        lines.append(
            f"cpu        python {fmt(percentile(cpu_py, 50), 0)}% tree "
            f"{fmt(percentile(cpu_tree, 50), 0)}% publishers {fmt(percentile(cpu_pub, 50), 0)}% "
            f"(of one core, median); machine busy {fmt(percentile(busy, 50), 0)}% of all cores "
            f"(max {fmt(max(busy, default=None), 0)}%); other processes "
            f"{fmt(percentile(other, 50), 0)}% (max {fmt(max(other, default=None), 0)}%)"
        )
        last_m = samples[-1].get("metrics", {})
        lines.append(
            "metrics    "
            + ", ".join(
                f"{k.removeprefix('liverelay_')}={v:g}"
                for k, v in sorted(last_m.items())
                if isinstance(v, float | int)
                and not k.startswith("liverelay_ingest_")
                and not k.endswith("_created")
            )
        )
    lines.append(
        f"healthz    p50 {fmt(hz.get('p50_ms'), 1)} ms, p99 {fmt(hz.get('p99_ms'), 1)} ms, "
        f"max {fmt(hz.get('max_ms'), 1)} ms over {hz.get('probes')} probes "
        f"({hz.get('over_100ms')} over 100 ms, {len(hz.get('failures', []))} failed)"
    )
    if hz.get("slow_probes"):
        sp = hz["slow_probes"]
        lines.append(
            f"           of the {sp['count']} probes over 100 ms, {sp['with_bench_wakeup_late']} "
            f"coincided with the bench process itself waking >50 ms late (machine stalled); "
            f"bench late wake-ups {sp['bench_late_wakeups']}, max "
            f"{fmt(sp['bench_late_max_ms'], 0)} ms"
        )
    if api:
        lines.append(
            f"api        {api['sent']} requests ({api['skipped']} skipped), p50 "
            f"{fmt(api['all']['p50_ms'], 1)} ms, p99 {fmt(api['all']['p99_ms'], 1)} ms, max "
            f"{fmt(api['all']['max_ms'], 0)} ms; "
            + ", ".join(
                f"{op} p50/p99 {fmt(api[op]['p50_ms'], 1)}/{fmt(api[op]['p99_ms'], 1)}"
                for op in ("list", "get", "patch")
            )
            + f"; statuses {json.dumps(api['statuses'])}"
        )
    if pubs:
        lines.append(
            f"publishers realtime min {fmt(pubs.get('realtime_min'), 3)}, median "
            f"{fmt(pubs.get('realtime_median'), 3)}, {pubs.get('below_realtime')} below "
            f"{REALTIME_MIN}"
        )
    if drain:
        pl = drain.get("playlists", {})
        lines.append(
            f"after stop {pl.get('closed')} playlists closed; stream status "
            f"{json.dumps(pl.get('stream_status'))}; session end reasons "
            f"{json.dumps(pl.get('session_end_reasons'))}"
        )
    if shutdown:
        lines.append(
            f"SIGTERM    exit {shutdown.get('exit_code')} after {fmt(shutdown.get('seconds'), 2)} s"
            + (" (SIGKILLed)" if shutdown.get("killed") else "")
        )
    log = result.get("server_log", {})
    lines.append(f"server log {json.dumps(log.get('levels', {}))}")
    for entry in log.get("messages", [])[:10]:
        lines.append(f"  {entry['count']:>5} x {entry['line'][:160]}")
    return "\n".join(lines)
