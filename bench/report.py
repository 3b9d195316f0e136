"""Markdown tables from a ``bench.compare`` JSON file (for docs/performance.md).

python -m bench.report bench/results/compare-<time>.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.common import fmt


def _one_line(step: dict[str, Any]) -> str:
    """The last line of a step's error (a traceback's exception line)."""
    lines = [line for line in str(step.get("error", "?")).splitlines() if line.strip()]
    return lines[-1].strip()[:200] if lines else "?"


def steps_table(steps: list[dict[str, Any]]) -> str:
    rows = [
        "| server | N | healthy | 1st playable s (med / max) | live-edge s (med) "
        "| behind publisher s (med) | CPU % of 1 core (tree) | per stream | main process "
        "| RSS MB | PSS MB | PSS/stream | PSS added/stream | publishers CPU % | other CPU % |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in steps:
        if "cpu_pct_one_core" not in s:
            rows.append(f"| {s['server']} | {s['streams']} | error: {_one_line(s)} |")
            continue
        fp, mem, cpu = s["first_playable_s"], s["memory_mb"], s["cpu_pct_one_core"]
        behind = s.get("edge_behind_publisher_s", {}).get("median")
        rows.append(
            f"| {s['server']} | {s['streams']} | {'yes' if s['ok'] else '**no**'} "
            f"| {fmt(fp['median'])} / {fmt(fp['max'])} "
            f"| {fmt(s['live_edge_delay_s']['median'])} | {fmt(behind)} "
            f"| {fmt(cpu['total'], 1)} | {fmt(cpu['per_stream'], 2)} "
            f"| {fmt(cpu.get('server_process_alone'), 1)} "
            f"| {fmt(mem['peak_rss'], 0)} | {fmt(mem['peak_pss'], 0)} "
            f"| {fmt(mem['pss_per_stream'], 1)} | {fmt(mem['pss_marginal_per_stream'], 1)} "
            f"| {fmt(s['publishers_cpu_pct_one_core'], 0)} "
            f"| {fmt(s.get('other_processes_cpu_pct_one_core'), 0)} |"
        )
    return "\n".join(rows)


def failures(steps: list[dict[str, Any]]) -> str:
    lines = []
    for s in steps:
        if not s.get("ok"):
            why = "; ".join(s.get("failures") or [_one_line(s)])
            lines.append(f"- {s['server']} N={s['streams']}: {why}")
    return "\n".join(lines)


def ratio_table(steps: list[dict[str, Any]], refs: list[str]) -> str:
    """liverelay / reference at every N where both were healthy."""
    ok = {(s["server"], s["streams"]): s for s in steps if s.get("ok")}
    rows = [
        "| N | vs | CPU/stream ratio | 1st playable delta s | live-edge delta s "
        "| machine busy % (liverelay / ref) |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for n in sorted({n for (_, n) in ok}):
        a = ok.get(("liverelay", n))
        for ref in refs:
            b = ok.get((ref, n))
            if not a or not b:
                continue
            ratio = a["cpu_pct_one_core"]["per_stream"] / b["cpu_pct_one_core"]["per_stream"]
            d_first = a["first_playable_s"]["median"] - b["first_playable_s"]["median"]
            d_edge = a["live_edge_delay_s"]["median"] - b["live_edge_delay_s"]["median"]
            rows.append(
                f"| {n} | {ref} | {ratio:.2f} | {d_first:+.2f} | {d_edge:+.2f} "
                f"| {a['machine_busy_pct_all_cores']:.0f} / "
                f"{b['machine_busy_pct_all_cores']:.0f} |"
            )
    return "\n".join(rows)


def api_table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| database | phase | requests | concurrency | req/s | p50 ms | p90 ms | p99 ms "
        "| server CPU % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "create" not in r:
            rows.append(f"| {r['backend']} | {r.get('error') or r.get('skipped')} |")
            continue
        for phase in ("create", "get", "list"):
            p = r[phase]
            rows.append(
                f"| {r['backend']} | {phase} | {p['requests']} | {p['concurrency']} "
                f"| {fmt(p['per_second'], 0)} | {fmt(p['p50_ms'], 1)} | {fmt(p['p90_ms'], 1)} "
                f"| {fmt(p['p99_ms'], 1)} | {fmt(p['server_cpu_pct_one_core'], 0)} |"
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("json", type=Path)
    args = parser.parse_args(argv)
    data = json.loads(args.json.read_text())
    print(f"machine: {json.dumps(data.get('machine'))}\n")
    print(steps_table(data["steps"]))
    if fails := failures(data["steps"]):
        print("\nfailed steps:\n" + fails)
    if "capacity" in data:
        print("\ncapacity: " + json.dumps(data["capacity"]))
    if "vs" in data:
        print("\n" + ratio_table(data["steps"], list(data["vs"])))
    if "api" in data:
        print("\n" + api_table(data["api"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
