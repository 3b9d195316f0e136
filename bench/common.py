"""Small helpers shared by the benchmarks: paths, ports, percentiles, the source clip."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

SOURCE_SECONDS = 20
"""Length of the looped source clip (a whole number of 2 s GOPs)."""


def ffmpeg_exe() -> str:
    """The imageio-ffmpeg binary liverelay itself uses (so every server runs the same ffmpeg)."""
    env = os.environ.get("LIVERELAY_FFMPEG")
    if env:
        return env
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def venv_exe(name: str, missing: str) -> str:
    """The program ``name`` next to this Python (its venv), else on PATH; exits with
    ``missing`` when there is none."""
    exe = Path(sys.executable).with_name(name)
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    if not found:
        raise SystemExit(missing)
    return found


def liverelay_exe() -> str:
    """The ``liverelay`` console script of this venv."""
    return venv_exe(
        "liverelay", "liverelay console script not found (pip install -e . in this venv)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for_port(port: int, timeout: float, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout:g} s")


async def wait_for_liverelay(
    http_port: int, rtmp_port: int, proc: asyncio.subprocess.Process
) -> None:
    """Wait until ``liverelay serve`` listens on both ports and ``/healthz`` answers 200."""
    await wait_for_port(http_port, 60, proc)
    await wait_for_port(rtmp_port, 30, proc)
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{http_port}/healthz") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError("liverelay /healthz never answered 200")


async def stop_process(proc: asyncio.subprocess.Process, *, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` s, of one process we started (by its pid)."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank-interpolated percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def source_clip(results_dir: Path = RESULTS_DIR) -> Path:
    """The publishers' input: 720p30 H.264 (High, ~2.9 Mbit/s, 2 s GOP, no scene cuts) + AAC
    stereo 128 kbit/s, 20 s, generated once. Noise on the test pattern keeps x264 at the target
    bitrate (a clean pattern compresses far below it)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / "source-720p30-3mbps.mp4"
    if path.exists() and path.stat().st_size > 1_000_000:
        return path
    tmp = path.with_suffix(".tmp.mp4")
    argv = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1280x720:rate=30,noise=alls=12:allf=t",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        str(SOURCE_SECONDS),
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-b:v",
        "2800k",
        "-maxrate",
        "2800k",
        "-bufsize",
        "5600k",
        "-g",
        "60",
        "-keyint_min",
        "60",
        "-sc_threshold",
        "0",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        "-ac",
        "2",
        "-movflags",
        "+faststart",
        str(tmp),
    ]
    print(f"generating {path.name} ({SOURCE_SECONDS} s) ...", flush=True)
    subprocess.run(argv, check=True, timeout=600)
    tmp.replace(path)
    return path


def fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}{suffix}"


async def create_api_key(env: dict[str, str], workdir: Path, name: str) -> str:
    """Run ``liverelay apikey create`` with ``env`` (it also migrates the database, so a
    ``serve`` started afterwards finds a ready schema); return the printed token."""
    cli = await asyncio.create_subprocess_exec(
        liverelay_exe(),
        "apikey",
        "create",
        "--name",
        name,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=workdir,
    )
    try:
        out, err = await asyncio.wait_for(cli.communicate(), 120)
    except TimeoutError:
        cli.kill()
        await cli.wait()
        raise RuntimeError("liverelay apikey create took longer than 120 s") from None
    if cli.returncode != 0:
        raise RuntimeError(f"liverelay apikey create failed: {err.decode()[-2000:]}")
    token: str = json.loads(out)["token"]
    return token


def bench_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """A command line parser for ``python -m <prog>`` whose help is the module's ``doc`` as
    written."""
    return argparse.ArgumentParser(
        prog=f"python -m {prog}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


async def create_livestream(
    http: aiohttp.ClientSession, base_url: str, body: dict[str, Any]
) -> dict[str, Any]:
    """``POST /v1/livestreams`` with ``body`` on a session that carries the token; the
    response body."""
    async with http.post(f"{base_url}/v1/livestreams", json=body) as r:
        if r.status != 201:
            raise RuntimeError(f"POST /v1/livestreams: {r.status} {await r.text()}")
        created: dict[str, Any] = await r.json()
        return created


async def create_livestreams(
    base_url: str,
    token: str,
    prefix: str,
    count: int,
    timeout: aiohttp.ClientTimeout | None = None,
    **fields: Any,
) -> list[dict[str, Any]]:
    """``POST /v1/livestreams`` ``count`` times (named ``<prefix>-<i>``, with ``fields``), one
    after another; the response bodies (``id``, ``upstreamUrl``, ``downstreamUrl``...)."""
    bodies: list[dict[str, Any]] = []
    async with aiohttp.ClientSession(
        headers={"Authorization": token}, timeout=timeout or aiohttp.client.DEFAULT_TIMEOUT
    ) as http:
        for i in range(count):
            body = {"name": f"{prefix}-{i}", **fields}
            async with http.post(f"{base_url}/v1/livestreams", json=body) as r:
                if r.status != 201:
                    raise RuntimeError(f"POST /v1/livestreams: {r.status} {await r.text()}")
                bodies.append(await r.json())
    return bodies


def write_result(result: Any, out: Path | None, prefix: str) -> Path:
    """Write ``result`` as JSON to ``out``, or to ``results/<prefix>-<time>.json``; the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = out or RESULTS_DIR / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    return out
