"""Hand-run benchmark of a two-node cluster on one PostgreSQL (see docs/scaling.md, "Measured").

``python -m bench.cluster`` measures, with ``liverelay serve`` processes on loopback and ffmpeg
publishers pushing the 720p30 benchmark clip in real time:

1. **Takeover after kill -9.** A stream is live on one node; that node gets SIGKILL, and its
   encoder (sent to the other node, as a TCP load balancer would) publishes again at once
   whenever it is turned away. Measured: from the kill to the other node serving the stream's
   playlist with a segment it cut itself (not one a killed process of it left on disk).
   Repeated ``--takeovers`` times, alternating the nodes; the killed node starts again under
   its id before the next run.
2. **PostgreSQL transactions per live stream**, from ``pg_stat_database`` (commits and
   rollbacks of the cluster's database) over ``--seconds`` at steady state: idle nodes, one
   stream, ``--streams`` streams on one node, and the same spread over both nodes.
3. **CPU per stream of a node** (the ``liverelay serve`` process and its ffmpeg children, from
   /proc) in the same phases: every stream on one node against half on each.

The takeover phase runs with ``--takeover-lease-seconds`` (3); the steady-state phases with the
default lease (``--lease-seconds``, 10), which sets how often leases are renewed. Recording is off.
Results go to ``bench/results/cluster-<time>.json`` and a summary is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.cluster_nodes import Cluster, Node, segments_on_disk, serves_segment
from bench.common import ffmpeg_exe, fmt, source_clip, write_result
from bench.load import Publisher
from bench.procstat import cpu_percent, cpu_sample, machine, system_busy_percent, system_cpu

TAKEOVER_BOUND = 60.0
"""Longest wait for one takeover before the run is counted as failed."""


async def wait_until(check: Any, timeout: float, what: str, interval: float = 0.05) -> float:
    """Poll the coroutine function ``check`` until it is true; the monotonic time it was."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout:g} s")
        await asyncio.sleep(interval)


class Encoder:
    """One stream's encoder: an ffmpeg publisher that publishes again when it is turned away."""

    def __init__(self, source: Path, logs: Path, stream: dict[str, Any]) -> None:
        self.source, self.logs, self.stream = source, logs, stream
        self.publisher: Publisher | None = None
        self.publishes = 0

    async def publish_to(self, node: Node) -> None:
        await self.stop()
        self.publishes += 1
        log = self.logs / f"publisher-{self.stream['id']}.log"
        self.publisher = Publisher(ffmpeg_exe(), self.source, node.upstream(self.stream), log)
        await self.publisher.start()

    async def keep_publishing(self, node: Node) -> None:
        if self.publisher is None or not self.publisher.alive:
            await self.publish_to(node)

    async def stop(self) -> None:
        if self.publisher is not None:
            await self.publisher.stop()


async def takeovers(workdir: Path, source: Path, runs: int, lease: float) -> dict[str, Any]:
    """Phase 1: ``runs`` takeovers after SIGKILL of the owner."""
    times: list[float] = []
    async with (
        Cluster(workdir / "takeover", ["a", "b"], lease) as cluster,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
    ):
        [stream] = await cluster.create_streams(1)
        encoder = Encoder(source, workdir, stream)
        owner, other = cluster.nodes
        await encoder.publish_to(owner)
        try:
            for run in range(runs):
                await wait_until(
                    lambda o=owner: serves_segment(http, o.playlist(stream["id"])), 60, "live"
                )
                stale = segments_on_disk(other, stream["id"])
                killed_at = time.monotonic()
                await owner.kill_9()
                encoder.publishes = 0

                async def live_on_other(o: Node = other, old: frozenset[str] = stale) -> bool:
                    await encoder.keep_publishing(o)
                    return await serves_segment(http, o.playlist(stream["id"]), old)

                await encoder.publish_to(other)
                served = await wait_until(live_on_other, TAKEOVER_BOUND, "takeover")
                times.append(served - killed_at)
                print(
                    f"takeover {run + 1}: {served - killed_at:.2f} s"
                    f" ({encoder.publishes} publishes)",
                    flush=True,
                )
                await cluster.restart(owner)
                owner, other = other, owner
        finally:
            await encoder.stop()
    return {
        "lease_seconds": lease,
        "seconds": times,
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "stdev": statistics.stdev(times) if len(times) > 1 else 0.0,
    }


async def steady(
    cluster: Cluster, http: aiohttp.ClientSession, encoders: list[Encoder], placement: list[Node]
) -> None:
    """Publish ``encoders[i]`` to ``placement[i]`` (the rest stop) and wait until all play."""
    for encoder in encoders[len(placement) :]:
        await encoder.stop()
    for encoder, node in zip(encoders, placement, strict=False):
        await encoder.publish_to(node)
    for encoder, node in zip(encoders, placement, strict=False):
        url = node.playlist(encoder.stream["id"])
        await wait_until(lambda u=url: serves_segment(http, u), 60, "playing", interval=0.2)


async def measure(cluster: Cluster, seconds: float) -> dict[str, Any]:
    """Transactions per second and each node's CPU (% of one core) over ``seconds``."""
    roots = [node.root_pids for node in cluster.nodes]
    before_tx, before_sys = await cluster.transactions(), system_cpu()
    before_cpu = [cpu_sample(r) for r in roots]
    started = time.monotonic()
    await asyncio.sleep(seconds)
    after_cpu = [cpu_sample(r) for r in roots]
    after_sys = system_cpu()
    elapsed = time.monotonic() - started
    after_tx = await cluster.transactions()
    return {
        "seconds": elapsed,
        "transactions_per_second": (after_tx - before_tx) / elapsed,
        "node_cpu_percent": [cpu_percent(b, a) for b, a in zip(before_cpu, after_cpu, strict=True)],
        "machine_busy_percent": system_busy_percent(before_sys, after_sys),
    }


async def steady_state(
    workdir: Path, source: Path, streams: int, seconds: float, lease: float
) -> dict[str, Any]:
    """Phases 2 and 3: idle, one stream, ``streams`` on node a, ``streams`` spread."""
    phases: dict[str, Any] = {}
    async with (
        Cluster(workdir / "steady", ["a", "b"], lease) as cluster,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
    ):
        a, b = cluster.nodes
        encoders = [Encoder(source, workdir, s) for s in await cluster.create_streams(streams)]
        plans = {
            "idle": [],
            "1 stream on a": [a],
            f"{streams} streams on a": [a] * streams,
            f"{streams} streams, half on each": [a, b] * (streams // 2),
        }
        try:
            for name, placement in plans.items():
                await steady(cluster, http, encoders, placement)
                await asyncio.sleep(3)  # past the start-up of the new sessions
                phases[name] = {"streams": len(placement), **await measure(cluster, seconds)}
                print(f"{name}: {json.dumps(phases[name])}", flush=True)
        finally:
            for encoder in encoders:
                await encoder.stop()
    return phases


def summary(result: dict[str, Any]) -> str:
    t = result["takeover"]
    lines = [
        f"takeover after kill -9 (lease {t['lease_seconds']:g} s, {len(t['seconds'])} runs): "
        f"median {t['median']:.2f} s, min {t['min']:.2f}, max {t['max']:.2f}",
        "",
        "| phase | streams | tx/s | node a CPU % | node b CPU % | machine busy % |",
        "|---|---|---|---|---|---|",
    ]
    for name, p in result["steady"].items():
        a, b = p["node_cpu_percent"]
        lines.append(
            f"| {name} | {p['streams']} | {fmt(p['transactions_per_second'], 1)} | {fmt(a, 1)}"
            f" | {fmt(b, 1)} | {fmt(p['machine_busy_percent'], 0)} |"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> None:
    source = source_clip()
    with tempfile.TemporaryDirectory(prefix="liverelay-cluster-") as tmp:
        workdir = Path(tmp)
        started = time.monotonic()
        result: dict[str, Any] = {"machine": machine(), "args": vars(args)}
        result["takeover"] = await takeovers(
            workdir, source, args.takeovers, args.takeover_lease_seconds
        )
        result["steady"] = await steady_state(
            workdir, source, args.streams, args.seconds, args.lease_seconds
        )
        result["wall_seconds"] = time.monotonic() - started
    path = write_result(result, args.out, "cluster")
    print(summary(result))
    print(f"results: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--takeovers", type=int, default=5)
    parser.add_argument("--takeover-lease-seconds", type=float, default=3.0)
    parser.add_argument("--lease-seconds", type=float, default=10.0)
    parser.add_argument("--streams", type=int, default=8, help="an even number")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.streams < 2 or args.streams % 2:
        parser.error("--streams must be an even number of at least 2")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
