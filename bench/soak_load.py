"""The load a soak puts on the service besides its publishers: a steady API load, and one
light viewer per stream that checks its playlist advanced and its newest segment downloads."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.common import create_livestreams
from bench.load import Publisher, get, is_ts_segment, parse_playlist
from bench.soak_service import Service

API_TIMEOUT = 10.0
API_MAX_IN_FLIGHT = 10


@dataclass
class ApiLoad:
    """GET list, GET one and PATCH name in turn, at ``rps`` requests a second."""

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
        """Send ``duration * rps`` requests on schedule (skipping while too many wait)."""
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
        """Requests that failed or answered other than 2xx."""
        return sum(n for k, n in self.statuses.items() if not k.split()[1].startswith("2"))


@dataclass
class Stream:
    """One soaked stream, its publisher, and what its viewer saw."""

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


async def check_playlist(http: aiohttp.ClientSession, stream: Stream, at: float) -> bool:
    """Fetch the playlist and its newest segment; record whether it advanced. Returns advanced."""
    try:
        status, body = await get(http, stream.playlist_url)
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
        seg_status, data = await get(http, seg_url)
        if not is_ts_segment(seg_status, data):
            stream.segment_errors.append(f"{at:.0f}s HTTP {seg_status}, {len(data)} bytes")
    except (aiohttp.ClientError, TimeoutError) as exc:
        stream.segment_errors.append(f"{at:.0f}s {type(exc).__name__}")
    return advanced


async def create_streams(service: Service, count: int) -> list[Stream]:
    """``POST /v1/livestreams`` ``count`` times."""
    assert service.token is not None
    timeout = aiohttp.ClientTimeout(total=API_TIMEOUT)
    bodies = await create_livestreams(service.base_url, service.token, "soak", count, timeout)
    return [Stream(b["id"], b["upstreamUrl"], b["downstreamUrl"]) for b in bodies]


async def wait_listed(
    http: aiohttp.ClientSession, streams: list[Stream], timeout: float
) -> list[str]:
    """Poll until every playlist lists a segment (at most ``timeout`` s); the ids that never
    did."""
    ready_deadline = time.monotonic() + timeout
    pending = list(streams)
    while pending and time.monotonic() < ready_deadline:
        still = []
        for stream in pending:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                status, body = await get(http, stream.playlist_url)
                pl = parse_playlist(body.decode(errors="replace")) if status == 200 else None
                if pl and pl.segments:
                    stream.first_listed_at = time.monotonic()
                    continue
            still.append(stream)
        pending = still
        if pending:
            await asyncio.sleep(0.5)
    return [s.id for s in pending]


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
            status, body = await get(http, stream.playlist_url)
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
