"""Soak test: one liverelay node under steady publish, playback and API load for a fixed time.

    python -m bench.soak [--publishers 20] [--minutes 10]

Starts ``liverelay serve`` in a temporary data directory (SQLite, 2 s segments, loopback ports),
creates an API key (``liverelay apikey create --name soak``) and one stream per publisher, then
pushes N real-time publishers (``ffmpeg -re -stream_loop -1 -i SRC -c copy -f flv URL``, the
720p30 ~3 Mbit/s clip of :func:`bench.common.source_clip`) and a steady API load (GET list,
GET one, PATCH name). Every ``--sample-seconds`` it records:

- RSS and PSS of the service's process tree (the Python process and its ffmpeg children, not the
  publishers) and of the Python process alone; CPU of both; machine busy %;
- open file descriptors and threads of the Python process;
- its children, and any zombie (state Z) among its descendants;
- ``/metrics`` (live streams, RTMP connections, rejects, output restarts, dropped frames);
- whether every stream's playlist advanced since the previous sample, and whether its newest
  segment downloads as MPEG-TS.

``/healthz`` is timed once a second from a separate thread (its latency is the event-loop lag
seen from outside).

At the end the publishers stop; within ``--drain-seconds`` no ffmpeg child of the service may
remain and every playlist must be closed. The service then gets SIGTERM and must exit 0 within
``--term-seconds``; no ffmpeg mentioning the data directory may be left anywhere (orphans).

Errors (must be zero): API non-2xx or failed requests, playlists that stopped advancing or never
started, segments that did not download, publishers that died, /healthz failures, zombies,
ffmpeg children left after the drain, orphans, a non-zero or late exit.

Results: bench/results/soak-<time>.json and a summary on stdout. Exit status 0 when there were
no errors. Loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import http.client
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench import procstat
from bench.common import (
    REPO_DIR,
    RESULTS_DIR,
    create_api_key,
    ffmpeg_exe,
    fmt,
    free_port,
    liverelay_exe,
    percentile,
    source_clip,
    wait_for_liverelay,
)
from bench.load import Publisher, parse_playlist
from bench.servers import extract_ref

SEGMENT_SECONDS = 2
LIST_SIZE = 6
HEALTHZ_INTERVAL = 1.0
HEALTHZ_TIMEOUT = 5.0
API_TIMEOUT = 10.0
API_MAX_IN_FLIGHT = 10
REALTIME_MIN = 0.97
"""A publisher keeps real time when it sent at least this many media seconds per wall second."""
MAX_PUBLISHERS = 200
MAX_MINUTES = 240


# --------------------------------------------------------------------------------------------
# /proc


def descendants(root: int) -> list[procstat.ProcInfo]:
    """Every process below ``root`` (not ``root`` itself)."""
    return [p for p in procstat.tree(root) if p.pid != root]


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []


def ffmpeg_mentioning(path: Path) -> list[dict[str, Any]]:
    """Every ffmpeg process on the machine whose command line mentions ``path``."""
    needle = str(path)
    found = []
    for p in procstat.all_processes().values():
        argv = _cmdline(p.pid)
        if argv and "ffmpeg" in os.path.basename(argv[0]) and any(needle in a for a in argv):
            found.append({"pid": p.pid, "ppid": p.ppid, "state": p.state})
    return found


def _socket_ports(pid: int) -> dict[str, int]:
    """Socket inode -> local TCP port, from the network namespace of ``pid``."""
    ports: dict[str, int] = {}
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) > 9:
                        ports[parts[9]] = int(parts[1].rsplit(":", 1)[1], 16)
        except OSError:
            continue
    return ports


def open_fds(pid: int, ports: dict[int, str] | None = None) -> dict[str, int]:
    """Open file descriptors of ``pid``, by kind: pipe, anon, socket (split by local port with
    ``ports``: port -> name, e.g. ``http`` and ``rtmp``), database (the SQLite file, -wal,
    -shm) and other files."""
    kinds = {"total": 0, "pipe": 0, "anon": 0, "socket": 0, "database": 0, "file": 0}
    for name in (ports or {}).values():
        kinds[f"socket_{name}"] = 0
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return kinds
    inode_ports = _socket_ports(pid) if ports else {}
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        kinds["total"] += 1
        if target.startswith("socket:"):
            kinds["socket"] += 1
            port = inode_ports.get(target[8:-1])
            if ports and port in ports:
                kinds[f"socket_{ports[port]}"] += 1
        elif target.startswith("pipe:"):
            kinds["pipe"] += 1
        elif target.startswith("anon_inode:"):
            kinds["anon"] += 1
        elif ".db" in os.path.basename(target):
            kinds["database"] += 1
        else:
            kinds["file"] += 1
    return kinds


def threads(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def own_memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in kB of ``pid`` alone."""
    return procstat._smaps_rollup(pid)


# --------------------------------------------------------------------------------------------
# the service


class Service:
    """``liverelay serve`` in its own session, with a temporary data directory."""

    def __init__(self, workdir: Path, *, publishers: int, source_dir: Path | None) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.http_port = free_port()
        self.rtmp_port = free_port()
        self.metrics_port = free_port()
        self.log_path = workdir / "server.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.token: str | None = None
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVERELAY_")}
        env.update(
            {
                "LIVERELAY_DATA_DIR": str(self.data_dir),
                "LIVERELAY_HTTP_HOST": "127.0.0.1",
                "LIVERELAY_HTTP_PORT": str(self.http_port),
                "LIVERELAY_RTMP_HOST": "127.0.0.1",
                "LIVERELAY_RTMP_PORT": str(self.rtmp_port),
                "LIVERELAY_METRICS_PORT": str(self.metrics_port),
                "LIVERELAY_HLS_SEGMENT_SECONDS": str(SEGMENT_SECONDS),
                "LIVERELAY_HLS_LIST_SIZE": str(LIST_SIZE),
                "LIVERELAY_LOG_FORMAT": "json",
                # every publisher connects from 127.0.0.1: the default cap is 10 per address
                "LIVERELAY_RTMP_MAX_CONNECTIONS_PER_ADDRESS": str(max(10, publishers + 10)),
            }
        )
        if source_dir is not None:
            # PYTHONPATH comes before the editable install's path hook
            env["PYTHONPATH"] = str(source_dir)
        self.env = env

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def ports(self) -> dict[int, str]:
        return {self.http_port: "http", self.rtmp_port: "rtmp", self.metrics_port: "metrics"}

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # the API key first: the CLI migrates the database, so serve starts on a ready schema
        self.token = await create_api_key(self.env, self.workdir, "soak")
        log = open(self.log_path, "ab")  # noqa: ASYNC230 - handed to the child
        try:
            self.proc = await asyncio.create_subprocess_exec(
                liverelay_exe(),
                "serve",
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                cwd=self.workdir,
            )
        finally:
            log.close()
        await wait_for_liverelay(self.http_port, self.rtmp_port, self.proc)

    async def terminate(self, timeout: float) -> dict[str, Any]:
        """SIGTERM; the exit status and how long it took (SIGKILL past ``timeout``)."""
        assert self.proc is not None
        if self.proc.returncode is not None:
            return {"exit_code": self.proc.returncode, "seconds": 0.0, "already_exited": True}
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
            return {"exit_code": code, "seconds": time.monotonic() - started, "killed": False}
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            code = await self.proc.wait()
            return {"exit_code": code, "seconds": time.monotonic() - started, "killed": True}

    def log_levels(self) -> dict[str, Any]:
        """Log lines by level, and the WARNING/ERROR messages (deduplicated, counted)."""
        levels: dict[str, int] = {}
        messages: dict[str, int] = {}
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return {"levels": levels, "messages": []}
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                levels["unparsed"] = levels.get("unparsed", 0) + 1
                continue
            level = str(entry.get("level", "?"))
            levels[level] = levels.get(level, 0) + 1
            if level in ("WARNING", "ERROR", "CRITICAL"):
                key = f"{level} {entry.get('logger')}: {str(entry.get('message'))[:300]}"
                messages[key] = messages.get(key, 0) + 1
        top = sorted(messages.items(), key=lambda kv: -kv[1])[:30]
        return {"levels": levels, "messages": [{"count": c, "line": m} for m, c in top]}

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# /healthz prober (own thread, own blocking client: the bench's event loop does not skew it)


class HealthProber(threading.Thread):
    def __init__(self, port: int, deadline: float) -> None:
        super().__init__(name="healthz-prober", daemon=True)
        self.port = port
        self.deadline = deadline
        self.stop_event = threading.Event()
        self.samples: list[tuple[float, float | None, str]] = []
        """(monotonic time, latency ms or None, "200" / error)."""

    def probe(self) -> tuple[float | None, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HEALTHZ_TIMEOUT)
        started = time.perf_counter()
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
            latency = (time.perf_counter() - started) * 1000
            return latency, str(response.status)
        except (OSError, http.client.HTTPException) as exc:
            return None, type(exc).__name__
        finally:
            conn.close()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop_event.is_set() and time.monotonic() < self.deadline:
            latency, outcome = self.probe()
            self.samples.append((time.monotonic(), latency, outcome))
            next_at += HEALTHZ_INTERVAL
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))

    def failures(self) -> list[tuple[float, str]]:
        return [(t, o) for t, lat, o in self.samples if lat is None or o != "200"]

    def latencies(self, start: float = 0.0, end: float = math.inf) -> list[float]:
        return [lat for t, lat, o in self.samples if lat is not None and start <= t <= end]


class JitterProbe(threading.Thread):
    """Sleeps 10 ms at a time in this (bench) process and records how late it wakes. Late
    wake-ups at the moments /healthz is slow mean the machine was starved (other processes, CPU
    steal), not that the service's event loop was blocked."""

    def __init__(self, deadline: float) -> None:
        super().__init__(name="jitter-probe", daemon=True)
        self.deadline = deadline
        self.stop_event = threading.Event()
        self.window_max_ms = 0.0
        self.late: list[tuple[float, float]] = []
        """(monotonic time, ms late) of every wake-up more than 50 ms late."""

    def run(self) -> None:
        while not self.stop_event.is_set() and time.monotonic() < self.deadline:
            before = time.monotonic()
            time.sleep(0.01)
            late = (time.monotonic() - before - 0.01) * 1000
            self.window_max_ms = max(self.window_max_ms, late)
            if late > 50 and len(self.late) < 10_000:
                self.late.append((time.monotonic(), late))

    def take_window_max(self) -> float:
        value, self.window_max_ms = self.window_max_ms, 0.0
        return value


# --------------------------------------------------------------------------------------------
# API load


@dataclass
class ApiLoad:
    base_url: str
    token: str
    stream_ids: list[str]
    rps: float
    latencies: dict[str, list[float]] = field(
        default_factory=lambda: {"list": [], "get": [], "patch": []}
    )
    statuses: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    skipped: int = 0
    """Requests not sent because API_MAX_IN_FLIGHT were already waiting."""
    sent: int = 0

    async def run(self, duration: float) -> None:
        interval = 1.0 / self.rps
        count = int(duration * self.rps)
        timeout = aiohttp.ClientTimeout(total=API_TIMEOUT)
        in_flight: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(
            headers={"Authorization": self.token}, timeout=timeout
        ) as http:
            started = time.monotonic()
            for i in range(count):
                delay = started + i * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if len(in_flight) >= API_MAX_IN_FLIGHT:
                    self.skipped += 1
                    continue
                task = asyncio.create_task(self._one(http, i))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if in_flight:
                await asyncio.wait(in_flight, timeout=API_TIMEOUT + 5)

    async def _one(self, http: aiohttp.ClientSession, i: int) -> None:
        op = ("list", "get", "patch")[i % 3]
        stream_id = self.stream_ids[(i // 3) % len(self.stream_ids)]
        self.sent += 1
        started = time.perf_counter()
        try:
            if op == "list":
                request = http.get(f"{self.base_url}/v1/livestreams?perPage=20&page=1")
            elif op == "get":
                request = http.get(f"{self.base_url}/v1/livestreams/{stream_id}")
            else:
                request = http.patch(
                    f"{self.base_url}/v1/livestreams/{stream_id}", json={"name": f"soak-{i}"}
                )
            async with request as r:
                body = await r.read()
                status = str(r.status)
                if not 200 <= r.status < 300 and len(self.errors) < 20:
                    self.errors.append(f"{op} {r.status}: {body[:300].decode(errors='replace')}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            status = type(exc).__name__
            if len(self.errors) < 20:
                self.errors.append(f"{op} {status}: {exc}")
        self.latencies[op].append((time.perf_counter() - started) * 1000)
        self.statuses[f"{op} {status}"] = self.statuses.get(f"{op} {status}", 0) + 1

    def non_2xx(self) -> int:
        return sum(n for k, n in self.statuses.items() if not k.split()[1].startswith("2"))


# --------------------------------------------------------------------------------------------
# streams


@dataclass
class Stream:
    id: str
    upstream_url: str
    playlist_url: str
    publisher: Publisher | None = None
    last_msn: int | None = None
    stalls: list[float] = field(default_factory=list)
    """Sample times (s into the soak) at which the playlist had not advanced."""
    fetch_errors: list[str] = field(default_factory=list)
    segment_errors: list[str] = field(default_factory=list)
    discontinuities: int = 0
    first_listed_at: float | None = None
    died_at: float | None = None
    died_code: int | None = None


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with http.get(url) as r:
        return r.status, await r.read()


async def check_playlist(http: aiohttp.ClientSession, stream: Stream, at: float) -> bool:
    """Fetch the playlist and its newest segment; record whether it advanced. Returns advanced."""
    try:
        status, body = await _get(http, stream.playlist_url)
    except (aiohttp.ClientError, TimeoutError) as exc:
        stream.fetch_errors.append(f"{at:.0f}s {type(exc).__name__}")
        stream.stalls.append(at)
        return False
    text = body.decode(errors="replace")
    playlist = parse_playlist(text) if status == 200 else None
    if playlist is None or not playlist.segments:
        stream.fetch_errors.append(f"{at:.0f}s HTTP {status}")
        stream.stalls.append(at)
        return False
    stream.discontinuities = max(stream.discontinuities, text.count("#EXT-X-DISCONTINUITY\n"))
    last = playlist.media_sequence + len(playlist.segments) - 1
    advanced = stream.last_msn is None or last > stream.last_msn
    if not advanced:
        stream.stalls.append(at)
    stream.last_msn = last
    seg_url = urllib.parse.urljoin(stream.playlist_url, playlist.segments[-1][0])
    try:
        seg_status, data = await _get(http, seg_url)
        if not (seg_status == 200 and len(data) >= 188 and data[0] == 0x47):
            stream.segment_errors.append(f"{at:.0f}s HTTP {seg_status}, {len(data)} bytes")
    except (aiohttp.ClientError, TimeoutError) as exc:
        stream.segment_errors.append(f"{at:.0f}s {type(exc).__name__}")
    return advanced


async def create_streams(service: Service, count: int) -> list[Stream]:
    streams: list[Stream] = []
    assert service.token is not None
    timeout = aiohttp.ClientTimeout(total=API_TIMEOUT)
    async with aiohttp.ClientSession(
        headers={"Authorization": service.token}, timeout=timeout
    ) as http:
        for i in range(count):
            async with http.post(
                f"{service.base_url}/v1/livestreams", json={"name": f"soak-{i}"}
            ) as r:
                if r.status != 201:
                    raise RuntimeError(f"POST /v1/livestreams: {r.status} {await r.text()}")
                body = await r.json()
            streams.append(Stream(body["id"], body["upstreamUrl"], body["downstreamUrl"]))
    return streams


# --------------------------------------------------------------------------------------------
# /metrics


def parse_metrics(text: str) -> dict[str, float]:
    """Sum of each metric family's samples, plus ``liverelay_output_state`` by state and
    ``liverelay_rtmp_rejects`` by reason."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("liverelay_"):
            continue
        name_labels, _, value = line.rpartition(" ")
        try:
            number = float(value)
        except ValueError:
            continue
        name = name_labels.split("{", 1)[0]
        if name.endswith("_created") or name.startswith("liverelay_http_request_duration"):
            continue
        if name == "liverelay_output_state":
            if number == 1.0 and 'state="' in name_labels:
                state = name_labels.split('state="', 1)[1].split('"', 1)[0]
                key = f"output_state:{state}"
                sums[key] = sums.get(key, 0) + 1
            continue
        if name.startswith("liverelay_rtmp_rejects") and 'reason="' in name_labels:
            reason = name_labels.split('reason="', 1)[1].split('"', 1)[0]
            key = f"rtmp_rejects:{reason}"
            sums[key] = sums.get(key, 0) + number
            continue
        sums[name] = sums.get(name, 0) + number
    return sums


# --------------------------------------------------------------------------------------------
# the run


def _mb(kb: int) -> float:
    return kb / 1024


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


def _git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", "-C", str(REPO_DIR), *args], capture_output=True, text=True, timeout=30
        )
        return result.stdout.strip()

    dirty = [line for line in git("status", "--porcelain").splitlines() if line]
    return {"head": git("rev-parse", "HEAD"), "dirty_paths": len(dirty)}


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    duration = args.minutes * 60.0
    warmup = min(args.warmup_seconds, duration / 4)
    ffmpeg = ffmpeg_exe()
    source = source_clip()
    source_dir: Path | None = None
    sha: str | None = None
    if args.ref:
        source_dir, sha = extract_ref(args.ref)
    workdir = Path(tempfile.mkdtemp(prefix="liverelay-soak-"))
    (workdir / "publishers").mkdir()
    service = Service(workdir, publishers=args.publishers, source_dir=source_dir)
    result: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": procstat.machine(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "liverelay": {"ref": args.ref, "commit": sha} if args.ref else _git_state(),
        "settings": {
            k: v
            for k, v in service.env.items()
            if k.startswith("LIVERELAY_") and k != "LIVERELAY_DATA_DIR"
        },
        "workdir": str(workdir),
        "ffmpeg": ffmpeg,
        "source": str(source),
        "warmup_seconds": warmup,
    }
    streams: list[Stream] = []
    prober: HealthProber | None = None
    jitter: JitterProbe | None = None
    orphans_after: list[dict[str, Any]] = []
    try:
        await service.start()
        result["service_pid"] = service.pid
        assert service.token is not None
        streams = await create_streams(service, args.publishers)
        idle_mem = procstat.mem_sample([service.pid])
        result["idle"] = {
            "tree_rss_mb": _mb(idle_mem.rss_kb),
            "tree_pss_mb": _mb(idle_mem.pss_kb),
            "fds": open_fds(service.pid, service.ports),
            "threads": threads(service.pid),
        }
        print(
            f"[{time.strftime('%H:%M:%S')}] service pid {service.pid} up; "
            f"{len(streams)} streams; starting publishers ...",
            flush=True,
        )
        for i, stream in enumerate(streams):
            stream.publisher = Publisher(
                ffmpeg, source, stream.upstream_url, workdir / "publishers" / f"{i}.log"
            )
            await stream.publisher.start()
            await asyncio.sleep(0.2)

        # every playlist lists a segment (bounded), then the soak window starts
        timeout = aiohttp.ClientTimeout(total=API_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            ready_deadline = time.monotonic() + 60
            pending = list(streams)
            while pending and time.monotonic() < ready_deadline:
                still = []
                for stream in pending:
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        status, body = await _get(http, stream.playlist_url)
                        pl = (
                            parse_playlist(body.decode(errors="replace")) if status == 200 else None
                        )
                        if pl and pl.segments:
                            stream.first_listed_at = time.monotonic()
                            continue
                    still.append(stream)
                pending = still
                if pending:
                    await asyncio.sleep(0.5)
            result["never_started"] = [s.id for s in pending]

            t0 = time.monotonic()
            end = t0 + duration
            prober = HealthProber(service.http_port, deadline=end + 120)
            prober.start()
            jitter = JitterProbe(deadline=end + 120)
            jitter.start()
            api = ApiLoad(service.base_url, service.token, [s.id for s in streams], args.api_rps)
            api_task = asyncio.create_task(api.run(duration))
            samples: list[dict[str, Any]] = []
            cpu_prev = procstat.cpu_sample([service.pid])
            pub_pids = [s.publisher.proc.pid for s in streams if s.publisher and s.publisher.proc]
            pub_cpu_prev = procstat.cpu_sample(pub_pids)
            sys_prev = procstat.system_cpu()
            self_prev = procstat.cpu_sample([os.getpid()])
            nproc = len(os.sched_getaffinity(0))
            print(
                f"[{time.strftime('%H:%M:%S')}] soak window {duration:.0f} s "
                f"(warm-up {warmup:.0f} s), sampling every {args.sample_seconds:g} s",
                flush=True,
            )
            sample_count = int(duration // args.sample_seconds) + 1
            for k in range(sample_count):
                delay = t0 + k * args.sample_seconds - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                at = time.monotonic() - t0
                sample = await take_sample(http, service, streams, at)
                cpu_now = procstat.cpu_sample([service.pid])
                pub_cpu_now = procstat.cpu_sample(pub_pids)
                sys_now = procstat.system_cpu()
                self_now = procstat.cpu_sample([os.getpid()])
                cpu = {
                    "tree": procstat.cpu_percent(cpu_prev, cpu_now),
                    "python": procstat.root_cpu_percent(cpu_prev, cpu_now),
                    "publishers": procstat.cpu_percent(pub_cpu_prev, pub_cpu_now),
                    "bench": procstat.root_cpu_percent(self_prev, self_now),
                    "machine_busy_pct_all_cores": procstat.system_busy_percent(sys_prev, sys_now),
                }
                # whatever else ran on the machine meanwhile (a shared machine skews latencies)
                cpu["other"] = max(
                    0.0,
                    cpu["machine_busy_pct_all_cores"] * nproc
                    - cpu["tree"]
                    - cpu["publishers"]
                    - cpu["bench"],
                )
                sample["cpu_pct_one_core"] = cpu
                cpu_prev, pub_cpu_prev, sys_prev, self_prev = (
                    cpu_now,
                    pub_cpu_now,
                    sys_now,
                    self_now,
                )
                window = [lat for _, lat, _ in prober.samples[-int(args.sample_seconds) :] if lat]
                sample["healthz_ms_last_window_max"] = max(window) if window else None
                sample["bench_wakeup_late_ms_window_max"] = jitter.take_window_max()
                sample["api_sent"] = api.sent
                sample["api_non_2xx"] = api.non_2xx()
                samples.append(sample)
                print_sample(sample, len(streams))
            await asyncio.wait_for(api_task, API_TIMEOUT + 30)
            soak_end = time.monotonic()
            result["samples"] = samples
            result["api"] = summarize_api(api)
            result["healthz"] = summarize_healthz(prober, t0, soak_end)
            result["healthz"]["slow_probes"] = slow_probes(prober, jitter, t0, soak_end)
            result["publishers"] = summarize_publishers(streams, t0, soak_end)

            # stop the publishers; the service must drain every output by itself
            print(f"[{time.strftime('%H:%M:%S')}] stopping publishers ...", flush=True)
            await asyncio.gather(*(s.publisher.stop() for s in streams if s.publisher))
            stopped_at = time.monotonic()
            drain_deadline = stopped_at + args.drain_seconds
            gone_after: float | None = None
            while time.monotonic() < drain_deadline:
                if not [p for p in descendants(service.pid) if p.comm.startswith("ffmpeg")]:
                    gone_after = time.monotonic() - stopped_at
                    break
                await asyncio.sleep(0.5)
            left = descendants(service.pid)
            result["drain"] = {
                "seconds_until_no_ffmpeg_child": gone_after,
                "children_left": [{"pid": p.pid, "comm": p.comm, "state": p.state} for p in left],
                "zombies_left": [p.pid for p in left if p.state == "Z"],
                "playlists": await check_closed(http, service, streams),
                "after": await take_sample(http, service, streams, None),
            }
            result["orphans_before_exit"] = [
                o for o in ffmpeg_mentioning(service.data_dir) if o["ppid"] != service.pid
            ]
            prober.stop_event.set()
            prober.join(HEALTHZ_TIMEOUT + 2)
            jitter.stop_event.set()

        print(f"[{time.strftime('%H:%M:%S')}] SIGTERM to the service ...", flush=True)
        result["shutdown"] = await service.terminate(args.term_seconds)
        await asyncio.sleep(1.0)
        orphans_after = ffmpeg_mentioning(service.data_dir)
        result["orphans_after_exit"] = orphans_after
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["server_log_tail"] = service.log_tail()
        print(f"soak aborted: {result['error']}", file=sys.stderr, flush=True)
    finally:
        if prober is not None:
            prober.stop_event.set()
        if jitter is not None:
            jitter.stop_event.set()
        for stream in streams:
            if stream.publisher is not None:
                with contextlib.suppress(Exception):
                    await stream.publisher.stop()
        if service.proc is not None and service.proc.returncode is None:
            result.setdefault("shutdown", await service.terminate(args.term_seconds))
        # anything left behind mentioning our data dir was started (indirectly) by this run
        for orphan in ffmpeg_mentioning(service.data_dir):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(orphan["pid"], signal.SIGKILL)
        result["server_log"] = service.log_levels()
        if args.keep:
            result["kept"] = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        if source_dir is not None:
            shutil.rmtree(source_dir, ignore_errors=True)
    result["streams"] = [
        {
            "id": s.id,
            "stalls_at_s": s.stalls,
            "fetch_errors": s.fetch_errors[:10],
            "segment_errors": s.segment_errors[:10],
            "discontinuities": s.discontinuities,
            "died_at_s": s.died_at,
            "died_code": s.died_code,
        }
        for s in streams
    ]
    result["errors"] = count_errors(result, streams)
    result["memory"] = summarize_memory(result.get("samples", []), warmup)
    return result


async def take_sample(
    http: aiohttp.ClientSession,
    service: Service,
    streams: list[Stream],
    at: float | None,
) -> dict[str, Any]:
    pid = service.pid
    tree = procstat.mem_sample([pid])
    rss, pss = own_memory(pid)
    below = descendants(pid)
    sample: dict[str, Any] = {
        "t_s": round(at, 1) if at is not None else None,
        "tree_rss_mb": _mb(tree.rss_kb),
        "tree_pss_mb": _mb(tree.pss_kb),
        "python_rss_mb": _mb(rss),
        "python_pss_mb": _mb(pss),
        "fds": open_fds(pid, service.ports),
        "threads": threads(pid),
        "children": len([p for p in below if p.ppid == pid]),
        "ffmpeg_children": len([p for p in below if p.comm.startswith("ffmpeg")]),
        "zombies": [{"pid": p.pid, "comm": p.comm} for p in below if p.state == "Z"],
    }
    started = time.perf_counter()
    try:
        status, body = await _get(http, service.metrics_url)
        sample["metrics_ms"] = (time.perf_counter() - started) * 1000
        sample["metrics"] = parse_metrics(body.decode(errors="replace")) if status == 200 else {}
    except (aiohttp.ClientError, TimeoutError) as exc:
        sample["metrics"] = {"error": type(exc).__name__}
    if at is not None:
        alive = 0
        for stream in streams:
            publisher = stream.publisher
            if publisher is not None and publisher.proc is not None:
                if publisher.alive:
                    alive += 1
                elif stream.died_at is None:
                    stream.died_at = at
                    stream.died_code = publisher.proc.returncode
        # the first check of a stream sets its baseline (counts as advanced when it lists one)
        results = await asyncio.gather(*(check_playlist(http, s, at) for s in streams))
        sample["playlists_advanced"] = sum(1 for r in results if r)
        sample["publishers_alive"] = alive
    return sample


async def check_closed(
    http: aiohttp.ClientSession, service: Service, streams: list[Stream]
) -> dict[str, Any]:
    """After the publishers stopped: each playlist ends with ENDLIST (or is gone), each stream is
    idle, and its session ended because the publisher left."""
    closed = 0
    still_open: list[str] = []
    statuses: dict[str, int] = {}
    end_reasons: dict[str, int] = {}
    assert service.token is not None
    auth = {"Authorization": service.token}
    for stream in streams:
        try:
            status, body = await _get(http, stream.playlist_url)
            if status == 404 or b"#EXT-X-ENDLIST" in body:
                closed += 1
            else:
                still_open.append(stream.id)
            async with http.get(
                f"{service.base_url}/v1/livestreams/{stream.id}", headers=auth
            ) as r:
                info = await r.json()
                statuses[str(info.get("status"))] = statuses.get(str(info.get("status")), 0) + 1
            async with http.get(
                f"{service.base_url}/v1/livestreams/{stream.id}/sessions", headers=auth
            ) as r:
                if r.status == 200:
                    for session in (await r.json()).get("data", []):
                        reason = str(session.get("endReason"))
                        end_reasons[reason] = end_reasons.get(reason, 0) + 1
                else:
                    end_reasons[f"HTTP {r.status}"] = end_reasons.get(f"HTTP {r.status}", 0) + 1
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            still_open.append(f"{stream.id}: {type(exc).__name__}")
    return {
        "closed": closed,
        "still_open": still_open,
        "stream_status": statuses,
        "session_end_reasons": end_reasons,
    }


def summarize_api(api: ApiLoad) -> dict[str, Any]:
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


def _fd_text(fds: dict[str, int]) -> str:
    named = ("socket_http", "socket_rtmp", "pipe", "database")
    other = fds.get("total", 0) - sum(fds.get(k, 0) for k in named)
    return (
        f"{fds.get('total')} (http {fds.get('socket_http', '-')}, "
        f"rtmp {fds.get('socket_rtmp', '-')}, pipe {fds.get('pipe')}, "
        f"db {fds.get('database')}, other {other})"
    )


def print_sample(sample: dict[str, Any], n: int) -> None:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--publishers", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--sample-seconds", type=float, default=10)
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=60,
        help="memory growth is measured from the first sample after this (at most 1/4 of the run)",
    )
    parser.add_argument("--api-rps", type=float, default=5, help="API requests per second")
    parser.add_argument("--drain-seconds", type=float, default=15)
    parser.add_argument("--term-seconds", type=float, default=30)
    parser.add_argument(
        "--ref", default=None, help="run liverelay from this git commit instead of the work tree"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not 1 <= args.publishers <= MAX_PUBLISHERS:
        raise SystemExit(f"--publishers must be 1..{MAX_PUBLISHERS}")
    if not 0.5 <= args.minutes <= MAX_MINUTES:
        raise SystemExit(f"--minutes must be 0.5..{MAX_MINUTES}")
    if not 2 <= args.sample_seconds <= 300 or not 0 < args.api_rps <= 100:
        raise SystemExit("--sample-seconds must be 2..300 and --api-rps 0..100")
    if not 1 <= args.drain_seconds <= 300 or not 1 <= args.term_seconds <= 300:
        raise SystemExit("--drain-seconds and --term-seconds must be 1..300")
    result = asyncio.run(soak(args))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS_DIR / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    print()
    print(summary_text(result))
    print(f"\nwrote {out}")
    return 0 if result.get("errors", {}).get("total", 1) == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
