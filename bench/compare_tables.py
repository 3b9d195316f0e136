"""What ``bench.compare`` prints: the per-step console table, each server's capacity, and
liverelay's ratios to each reference server."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from bench.common import fmt

COLUMNS = (
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
)


def row(step: dict[str, Any]) -> list[str]:
    """One step's cells under :data:`COLUMNS` (or its error, for a step that crashed)."""
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
    """The console table of ``steps``, each failed step followed by why it failed."""
    head = " | ".join(name.ljust(width) for name, width in COLUMNS)
    lines = [head, "-" * len(head)]
    for step in steps:
        cells = row(step)
        lines.append(" | ".join(c.ljust(w) for c, (_, w) in zip(cells, COLUMNS, strict=False)))
        if not step.get("ok", False) and step.get("failures"):
            lines.append("    failed: " + "; ".join(step["failures"]))
    return "\n".join(lines)


def capacity(steps: list[dict[str, Any]], server: str) -> dict[str, Any]:
    """The largest healthy N of ``server``, its first failed N, and every N it ran."""
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


def print_summary(result: dict[str, Any]) -> None:
    """The whole run on stdout: every step, each server's capacity, liverelay's ratios (and the
    API benchmark's table when it ran)."""
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
