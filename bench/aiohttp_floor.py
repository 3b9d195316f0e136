"""The floor under liverelay's CPU per playback request: a bare aiohttp server (one route, a
handler returning ``--body-bytes`` bytes, no middleware, no access log) in a child process pinned
to the first CPU, and keep-alive clients on the second asking every 20 ms each. Prints the
server's CPU time per request.

    python -m bench.aiohttp_floor [--body-bytes 1500] [--clients 100] [--seconds 8] [--uvloop]

``--uvloop`` runs the server on uvloop's event loop (``pip install uvloop`` first; not a
dependency of liverelay). Run it under another interpreter to compare Python versions. Run by
hand; loopback only, bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import time

import aiohttp
from aiohttp import web

from bench.procstat import CLK_TCK


def _server(port: int, body: bytes, uvloop: bool) -> None:
    os.sched_setaffinity(0, {0})
    if uvloop:
        policy = importlib.import_module("uvloop").EventLoopPolicy()
        asyncio.set_event_loop_policy(policy)
    headers = {"Content-Type": "video/iso.segment", "Cache-Control": "no-cache"}

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/live/{id}/{segment}", answer)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def _clients(port: int, pid: int, clients: int, seconds: float) -> tuple[int, float]:
    os.sched_setaffinity(0, {1})
    url = f"http://127.0.0.1:{port}/live/0/part-1.m4s"
    answered = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        for _ in range(100):  # the server starting
            try:
                async with http.get(url) as r:
                    await r.read()
                break
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
        until = time.monotonic() + seconds
        started = _cpu_seconds(pid)

        async def client() -> None:
            nonlocal answered
            while time.monotonic() < until:
                async with http.get(url) as r:
                    await r.read()
                answered += 1
                await asyncio.sleep(0.02)

        await asyncio.gather(*(client() for _ in range(clients)))
        return answered, _cpu_seconds(pid) - started


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.aiohttp_floor", description=__doc__)
    parser.add_argument("--body-bytes", type=int, default=1500)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--port", type=int, default=18999)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    pid = os.fork()
    if pid == 0:
        try:
            _server(args.port, b"x" * args.body_bytes, args.uvloop)
        finally:
            os._exit(0)
    try:
        answered, cpu = asyncio.run(_clients(args.port, pid, args.clients, args.seconds))
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    print(f"{answered} requests, {cpu / answered * 1e6:.1f} µs of server CPU per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
