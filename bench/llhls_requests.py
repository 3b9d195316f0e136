"""Server CPU per low-latency request, by kind, for ``bench.llhls --phases requests``.

One low-latency stream, and for each kind in turn ``concurrency`` clients asking for it again
and again for ``seconds``:

- ``playlist``: the full media playlist, no query (answered at once);
- ``playlist-delta``: ``?_HLS_skip=YES`` (answered at once);
- ``blocking``: a blocking reload for the next part with ``_HLS_skip=YES``, each client asking
  for the part after the one its last answer held (every answer waits for a new part);
- ``part``: the newest complete part (``EXT-X-PART``), answered from memory at once;
- ``segment``: the newest complete segment (about 2 s of media).

The CPU time of the ``liverelay serve`` process (``/proc/<pid>/stat``, not its ffmpeg) over the
kind's window, minus the stream's own CPU measured just before, divided by the answers.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp

from bench import procstat
from bench.llhls_viewers import next_part

KINDS = ("playlist", "playlist-delta", "blocking", "part", "segment")
_PART_URI = re.compile(r'#EXT-X-PART:[^\n]*URI="([^"]+)"')


def newest_uris(playlist: str) -> tuple[str | None, str | None]:
    """The URI of the newest complete part and of the newest complete segment."""
    parts = _PART_URI.findall(playlist)
    segments = [line for line in playlist.splitlines() if line and not line.startswith("#")]
    return (parts[-1] if parts else None), (segments[-1] if segments else None)


async def _ask(
    http: aiohttp.ClientSession, url: str, params: dict[str, str] | None = None
) -> tuple[int, str | bytes]:
    async with http.get(url, params=params) as r:
        body = await (r.text() if url.endswith(".m3u8") else r.read())
        return r.status, body


async def _run_kind(
    http: aiohttp.ClientSession, playlist_url: str, kind: str, clients: int, seconds: float
) -> tuple[int, int]:
    """(answers with 200, others) of ``clients`` clients asking for ``kind`` for ``seconds``."""
    base = playlist_url.rsplit("/", 1)[0]
    until = time.monotonic() + seconds
    ok = failed = 0
    target: dict[str, str | None] = {"part": None, "segment": None}

    async def refresh() -> None:  # media names move on with the window
        nonlocal ok
        while time.monotonic() < until:
            status, text = await _ask(http, playlist_url)
            ok += status == 200
            target["part"], target["segment"] = newest_uris(str(text))
            await asyncio.sleep(0.5)

    async def client() -> None:
        nonlocal ok, failed
        query: dict[str, str] = {}
        while time.monotonic() < until:
            params: dict[str, str] | None = None
            url = playlist_url
            if kind == "playlist-delta":
                params = {"_HLS_skip": "YES"}
            elif kind == "blocking":
                params = {**query, "_HLS_skip": "YES"}
            elif kind in ("part", "segment"):
                name = target[kind]
                if name is None:
                    await asyncio.sleep(0.05)
                    continue
                url = f"{base}/{name}"
            try:
                status, body = await _ask(http, url, params)
            except (aiohttp.ClientError, TimeoutError):
                failed += 1
                continue
            if status != 200:
                failed += 1
                query = {}
                continue
            ok += 1
            if kind == "blocking":
                msn, part, _ = next_part(str(body))
                query = {"_HLS_msn": str(msn), "_HLS_part": str(part)}

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    if kind in ("part", "segment"):
        tasks.append(asyncio.create_task(refresh()))
    await asyncio.gather(*tasks)
    return ok, failed


async def request_costs(
    playlist_url: str, pid: int, *, seconds: float, clients: int, blocking_clients: int
) -> list[dict[str, Any]]:
    """One row per kind: answers, CPU per answer (ms) and the baseline it left out."""
    rows = []
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        for kind in KINDS:
            begin = procstat.cpu_sample([pid])
            await asyncio.sleep(seconds / 2)  # the stream alone, just before
            end = procstat.cpu_sample([pid])
            baseline = (end.roots_own_ticks - begin.roots_own_ticks) / (end.at - begin.at)
            count = blocking_clients if kind == "blocking" else clients
            begin = procstat.cpu_sample([pid])
            ok, failed = await _run_kind(http, playlist_url, kind, count, seconds)
            end = procstat.cpu_sample([pid])
            elapsed = end.at - begin.at
            ticks = end.roots_own_ticks - begin.roots_own_ticks - baseline * elapsed
            rows.append(
                {
                    "kind": kind,
                    "clients": count,
                    "answers": ok,
                    "failed": failed,
                    "answers_per_s": ok / elapsed,
                    "server_cpu_cores": (end.roots_own_ticks - begin.roots_own_ticks)
                    / procstat.CLK_TCK
                    / elapsed,
                    "baseline_cpu_cores": baseline / procstat.CLK_TCK,
                    "cpu_ms_per_request": 1000 * ticks / procstat.CLK_TCK / max(ok, 1),
                }
            )
            print(rows[-1], flush=True)
    return rows
