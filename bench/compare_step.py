"""One step of the ``bench.compare`` ramp: start one server fresh, push N publishers, wait until
every stream is playable, then measure the server's process tree over one window."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import procstat
from bench.compare_summary import summarize
from bench.load import (
    Publisher,
    StreamProbe,
    check_final,
    view,
    wait_first_playable,
    watch_disk,
)
from bench.servers import Liverelay, Nginx, NodeMediaServer, Server

SERVERS = ("liverelay", "nginx", "nms")


def make_server(name: str, workdir: Path, ffmpeg: str) -> Server:
    """A fresh, not yet started server of kind ``name`` (one of :data:`SERVERS`) in ``workdir``."""
    if name == "liverelay":
        return Liverelay(workdir)
    if name == "nginx":
        return Nginx(workdir)
    if name == "nms":
        return NodeMediaServer(workdir, ffmpeg=ffmpeg)
    raise ValueError(name)


def unavailable(name: str) -> str | None:
    """Why server ``name`` cannot run on this machine, or None when it can."""
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
