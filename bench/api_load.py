"""Control-API benchmark: creates per second and GET latency under concurrency, on SQLite and on
PostgreSQL (127.0.0.1:5432, user postgres, trust auth; a fresh ``liverelay_bench_<hex>``
database is created and dropped afterwards).

    python -m bench.api_load [--requests 500] [--concurrency 20] [--backends sqlite,postgres]

Every phase is a fixed number of requests; nothing loops unbounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench import procstat
from bench.common import REPO_DIR, RESULTS_DIR, fmt, percentile, write_result
from bench.servers import Liverelay

PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _written(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


async def _phase(
    count: int,
    concurrency: int,
    request: Callable[[int], Awaitable[int]],
    roots: list[int],
) -> dict[str, Any]:
    """Run ``count`` requests, ``concurrency`` at a time; latency per request in ms."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            i = next_index
            next_index += 1
            t = time.perf_counter()
            try:
                status = await request(i)
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = type(exc).__name__  # type: ignore[assignment]
            latencies.append((time.perf_counter() - t) * 1000)
            statuses[str(status)] = statuses.get(str(status), 0) + 1

    cpu0 = procstat.cpu_sample(roots)
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    cpu1 = procstat.cpu_sample(roots)
    return {
        "requests": count,
        "concurrency": concurrency,
        "seconds": elapsed,
        "per_second": count / elapsed if elapsed > 0 else None,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies) if latencies else None,
        "statuses": statuses,
        "server_cpu_pct_one_core": procstat.cpu_percent(cpu0, cpu1),
    }


async def bench_backend(
    backend: str, *, requests: int, concurrency: int, profile_get: Path | None = None
) -> dict[str, Any]:
    """One database backend; with ``profile_get`` the server runs under
    :mod:`bench.cprofile_serve` and the GET phase is profiled into that file."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-api-{backend}-"))
    database_url = None
    dbname = None
    result: dict[str, Any] = {"backend": backend}
    if backend == "postgres":
        import asyncpg

        dbname = f"liverelay_bench_{secrets.token_hex(4)}"
        conn = await asyncpg.connect(PG_DSN, timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{dbname}"')
        finally:
            await conn.close()
        database_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{dbname}"
        result["database"] = dbname
    server = Liverelay(workdir, database_url=database_url)
    if profile_get is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(profile_get)
        server.serve_argv = [sys.executable, "-m", "bench.cprofile_serve", str(profile_get)]
        server.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (server.env.get("PYTHONPATH"), str(REPO_DIR)) if p
        )
    try:
        await server.start()
        base = server.base_url
        ids: list[str] = []
        timeout = aiohttp.ClientTimeout(total=30)
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(
            headers=server.auth, timeout=timeout, connector=connector
        ) as http:
            # warm-up (connection pool, first queries), not measured
            for _ in range(10):
                async with http.get(f"{base}/v1/livestreams") as r:
                    await r.read()

            async def create(i: int) -> int:
                async with http.post(f"{base}/v1/livestreams", json={"name": f"api-{i}"}) as r:
                    body = await r.json()
                    if r.status == 201:
                        ids.append(body["id"])
                    return r.status

            async def get_one(i: int) -> int:
                async with http.get(f"{base}/v1/livestreams/{ids[i % len(ids)]}") as r:
                    await r.read()
                    return r.status

            async def list_page(i: int) -> int:
                async with http.get(f"{base}/v1/livestreams?perPage=20&page={1 + i % 5}") as r:
                    await r.read()
                    return r.status

            roots = server.root_pids
            result["create"] = await _phase(requests, concurrency, create, roots)
            if not ids:
                raise RuntimeError("no stream was created")
            if profile_get is not None:
                os.kill(roots[0], signal.SIGUSR1)
            result["get"] = await _phase(requests, concurrency, get_one, roots)
            if profile_get is not None:
                os.kill(roots[0], signal.SIGUSR2)
                for _ in range(100):
                    if _written(profile_get):
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.5)
            result["list"] = await _phase(requests, concurrency, list_page, roots)
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["server_log_tail"] = server.log_tail()
    finally:
        await server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        if dbname is not None:
            import asyncpg

            with contextlib.suppress(Exception):
                conn = await asyncpg.connect(PG_DSN, timeout=10)
                try:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
                    result["database_dropped"] = True
                finally:
                    await conn.close()
    return result


async def postgres_available() -> str | None:
    try:
        import asyncpg

        conn = await asyncpg.connect(PG_DSN, timeout=5)
        await conn.close()
    except Exception as exc:
        return f"PostgreSQL not reachable at 127.0.0.1:5432 as postgres: {exc}"
    return None


async def run_api_benchmarks(
    backends: tuple[str, ...] = ("sqlite", "postgres"),
    *,
    requests: int = 500,
    concurrency: int = 20,
) -> list[dict[str, Any]]:
    results = []
    for backend in backends:
        if backend == "postgres" and (reason := await postgres_available()):
            print(f"skipping postgres: {reason}", file=sys.stderr)
            results.append({"backend": backend, "skipped": reason})
            continue
        print(f"[{time.strftime('%H:%M:%S')}] API on {backend} ...", flush=True)
        results.append(await bench_backend(backend, requests=requests, concurrency=concurrency))
    return results


def api_table(results: list[dict[str, Any]]) -> str:
    head = (
        "backend  | phase  | req | conc | req/s  | p50 ms | p90 ms | p99 ms | max ms | "
        "server CPU % | statuses"
    )
    lines = [head, "-" * len(head)]
    for res in results:
        if "error" in res or "skipped" in res:
            lines.append(f"{res['backend']:<8} | {res.get('error') or res.get('skipped')}")
            continue
        for phase in ("create", "get", "list"):
            p = res[phase]
            lines.append(
                f"{res['backend']:<8} | {phase:<6} | {p['requests']:<3} | {p['concurrency']:<4} | "
                f"{fmt(p['per_second'], 0):<6} | {fmt(p['p50_ms'], 1):<6} | "
                f"{fmt(p['p90_ms'], 1):<6} | {fmt(p['p99_ms'], 1):<6} | {fmt(p['max_ms'], 0):<6} | "
                f"{fmt(p['server_cpu_pct_one_core'], 0):<12} | {json.dumps(p['statuses'])}"
            )
    return "\n".join(lines)


def profile_get_phase(requests: int, concurrency: int) -> int:
    from bench.profile import summarize_cprofile

    prof = RESULTS_DIR / "cprofile-api-get.prof"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    res = asyncio.run(
        bench_backend("sqlite", requests=requests, concurrency=concurrency, profile_get=prof)
    )
    if "error" in res or not prof.exists():
        print(res.get("error"), res.get("server_log_tail"), sep="\n")
        return 1
    text = summarize_cprofile(prof, 30)
    report = RESULTS_DIR / "cprofile-api-get.txt"
    report.write_text(text + "\n")
    print(api_table([res]))
    print()
    print(text)
    print(f"\nwrote {report}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.api_load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--cprofile",
        action="store_true",
        help="profile the GET phase on SQLite (CPU-time cProfile) into "
        "bench/results/cprofile-api-get.txt; timings of that run are inflated",
    )
    args = parser.parse_args(argv)
    if args.cprofile:
        return profile_get_phase(args.requests, args.concurrency)
    if not 0 < args.requests <= 100_000 or not 0 < args.concurrency <= 1000:
        raise SystemExit("--requests must be 1..100000 and --concurrency 1..1000")
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    results = asyncio.run(
        run_api_benchmarks(backends, requests=args.requests, concurrency=args.concurrency)
    )
    out = write_result({"machine": procstat.machine(), "results": results}, args.out, "api")
    print(api_table(results))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
