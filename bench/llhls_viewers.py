"""Simulated low-latency viewers for ``bench.llhls``: aiohttp clients that do what hls.js does in
its low-latency mode, a blocking reload of the playlist for the next part (as a delta update)
followed by a request for the part the playlist hints, and a probe of the server's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
from dataclasses import dataclass, field

import aiohttp

_HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"')
_LAG_BUCKET = re.compile(r'liverelay_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)')


@dataclass
class Counts:
    requests: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


def next_part(playlist: str) -> tuple[int, int, str | None]:
    """(``_HLS_msn``, ``_HLS_part``) of the first part a playlist does not hold yet, and the URI
    of the part it hints."""
    sequence = skipped = complete = open_parts = 0
    for line in playlist.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-SKIP:SKIPPED-SEGMENTS="):
            skipped = int(line.split("=", 1)[1])
        elif line.startswith("#EXTINF:"):
            complete += 1
            open_parts = 0
        elif line.startswith("#EXT-X-PART:"):
            open_parts += 1
    # parts listed before a segment's EXTINF belong to that (complete) segment
    hint = _HINT.search(playlist)
    return sequence + skipped + complete, open_parts, hint[1] if hint else None


def _count(counts: Counts, status: int) -> None:
    counts.requests += 1
    counts.statuses[status] = counts.statuses.get(status, 0) + 1


async def viewer(
    http: aiohttp.ClientSession, playlist_url: str, until: float, counts: Counts
) -> None:
    """One viewer until the monotonic time ``until``."""
    base = playlist_url.rsplit("/", 1)[0]
    query: dict[str, str] = {}
    while time.monotonic() < until:
        try:
            async with http.get(playlist_url, params={**query, "_HLS_skip": "YES"}) as r:
                text = await r.text()
                _count(counts, r.status)
            if r.status != 200:
                query = {}
                continue
            msn, part, hint = next_part(text)
            query = {"_HLS_msn": str(msn), "_HLS_part": str(part)}
            if hint is not None:
                async with http.get(f"{base}/{hint}") as r:
                    await r.read()
                    _count(counts, r.status)
        except (aiohttp.ClientError, TimeoutError):
            counts.errors += 1
            await asyncio.sleep(0.2)


async def run_viewers(playlist_url: str, count: int, seconds: float) -> Counts:
    """``count`` viewers for ``seconds``, started over the first part target so that they do
    not all ask at the same instant."""
    counts = Counts()
    until = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        tasks = []
        for _ in range(count):
            tasks.append(asyncio.create_task(viewer(http, playlist_url, until, counts)))
            await asyncio.sleep(0.2 / count)
        await asyncio.gather(*tasks)
    return counts


async def probe_loop(base_url: str, seconds: float, every: float = 0.05) -> list[float]:
    """Round-trip times (ms) of ``/healthz`` every ``every`` s for ``seconds``: an upper bound of
    the server's event-loop lag (it includes the request's own work)."""
    times: list[float] = []
    until = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < until:
            started = time.perf_counter()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"{base_url}/healthz") as r:
                    await r.read()
                times.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(every)
    return times


async def probe_process(base_url: str, seconds: float) -> list[float]:
    """:func:`probe_loop` in a process of its own, so that the viewers' event loop does not
    delay it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.llhls_viewers", base_url, str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), seconds + 30)
    result: list[float] = json.loads(out)
    return result


async def loop_lag_buckets(base_url: str, token: str) -> list[tuple[float, float]]:
    """The server's cumulative ``liverelay_event_loop_lag_seconds`` buckets (upper bound,
    count), read from ``/metrics`` on its public port (``LIVERELAY_METRICS_TOKEN``)."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base_url}/metrics", headers={"Authorization": f"Bearer {token}"}) as r,
    ):
        text = await r.text()
    return [(float(le), float(count)) for le, count in _LAG_BUCKET.findall(text)]


def lag_quantile(
    before: list[tuple[float, float]], after: list[tuple[float, float]], q: float
) -> float | None:
    """The ``q`` quantile (0 to 1) of the lags probed between two :func:`loop_lag_buckets`
    readings, interpolated linearly inside its bucket as Prometheus' ``histogram_quantile``
    does; ``None`` without probes. Above the largest finite bound: that bound."""
    counts = [(le, a - b) for (le, a), (_, b) in zip(after, before, strict=True)]
    total = counts[-1][1] if counts else 0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for le, cumulative in counts:
        if cumulative >= rank:
            if le == float("inf"):
                return lower
            inside = cumulative - below
            return lower + (le - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = le, cumulative
    return lower


if __name__ == "__main__":
    print(json.dumps(asyncio.run(probe_loop(sys.argv[1], float(sys.argv[2])))))
