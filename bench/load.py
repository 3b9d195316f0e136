"""Publishers (ffmpeg pushing a looped clip in real time) and HLS probes (one light viewer per
stream plus a watcher of the playlist file on disk)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.servers import Target


@dataclass
class Playlist:
    media_sequence: int
    segments: list[tuple[str, float]]
    """(uri, duration) in order."""


def parse_playlist(text: str) -> Playlist | None:
    if not text.startswith("#EXTM3U"):
        return None
    seq = 0
    segments: list[tuple[str, float]] = []
    duration: float | None = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            seq = int(line.split(":", 1)[1])
        elif line.startswith("#EXTINF:"):
            duration = float(line[8:].split(",", 1)[0])
        elif line and not line.startswith("#") and duration is not None:
            segments.append((line, duration))
            duration = None
    return Playlist(seq, segments)


class Publisher:
    """``ffmpeg -re -stream_loop -1 -i SRC -c copy -f flv URL`` with ``-progress`` parsed:
    ``out_time`` against wall time tells whether it keeps real-time speed.

    ``-readrate_initial_burst 0``: ffmpeg 7.1+ sends the first 0.5 s of media at once by default;
    a live encoder cannot, and the burst would make the live-edge delay read 0.5 s too low."""

    def __init__(self, ffmpeg: str, source: Path, url: str, log_path: Path) -> None:
        self.argv = [
            ffmpeg,
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-nostats",
            "-progress",
            "pipe:1",
            "-stats_period",
            "1",
            "-re",
            "-readrate_initial_burst",
            "0",
            "-stream_loop",
            "-1",
            "-i",
            str(source),
            "-c",
            "copy",
            "-f",
            "flv",
            url,
        ]
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at = 0.0
        self.samples: list[tuple[float, float]] = []
        """(monotonic wall time, out_time seconds) per progress block."""
        self.speeds: list[float] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: ASYNC230 - handed to the child
        try:
            self.started_at = time.monotonic()
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        self._reader = asyncio.create_task(self._read_progress())

    async def _read_progress(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        out_time: float | None = None
        while line := await self.proc.stdout.readline():
            key, _, value = line.decode(errors="replace").strip().partition("=")
            if key == "out_time_us" and value.isdigit():
                out_time = int(value) / 1e6
            elif key == "speed" and value.endswith("x"):
                with contextlib.suppress(ValueError):
                    self.speeds.append(float(value[:-1]))
            elif key == "progress" and out_time is not None:
                self.samples.append((time.monotonic(), out_time))

    def realtime_ratio(self, start: float, end: float) -> float | None:
        """Media seconds sent per wall second between ``start`` and ``end``."""
        inside = [s for s in self.samples if start <= s[0] <= end + 1.5]
        before = [s for s in self.samples if s[0] <= start]
        points = ([before[-1]] if before else []) + inside
        if len(points) < 2:
            return None
        (t0, m0), (t1, m1) = points[0], points[-1]
        return (m1 - m0) / (t1 - t0) if t1 > t0 else None

    def sent_at(self, when: float) -> float | None:
        """Media seconds the publisher had sent at monotonic time ``when`` (interpolated between
        progress blocks; extrapolated at real time past the last one)."""
        before = [s for s in self.samples if s[0] <= when]
        after = [s for s in self.samples if s[0] > when]
        if not before:
            return None
        t0, m0 = before[-1]
        if not after:
            return m0 + (when - t0)
        t1, m1 = after[0]
        return m0 + (m1 - m0) * (when - t0) / (t1 - t0)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


@dataclass
class StreamProbe:
    """What was observed of one stream."""

    target: Target
    publisher: Publisher
    first_listed_at: float | None = None
    """Monotonic time the playlist file on disk first listed a segment."""
    first_playable_at: float | None = None
    """Monotonic time the playlist over HTTP listed a segment that downloaded as MPEG-TS."""
    segments: dict[int, float] = field(default_factory=dict)
    """Media sequence number -> duration, for every segment ever listed on disk."""
    appeared: list[tuple[float, int]] = field(default_factory=list)
    """(monotonic time, msn) when each segment was first seen on disk."""
    edge_delays: list[tuple[float, float]] = field(default_factory=list)
    """(time, seconds since publish start - media listed so far), sampled as segments appear."""
    edge_listed: list[tuple[float, float]] = field(default_factory=list)
    """(time, media listed so far) at the same instants (to compare with what was sent)."""
    http_polls: int = 0
    http_errors: int = 0
    http_last_status: int | None = None
    final_segment_ok: bool | None = None
    final_error: str | None = None
    _stat_key: tuple[int, int] | None = None

    @property
    def t0(self) -> float:
        return self.publisher.started_at

    def media_total(self) -> float:
        return sum(self.segments.values())

    def watch_disk(self, now: float) -> None:
        """Re-read the playlist file if it changed; record new segments."""
        try:
            st = os.stat(self.target.playlist_file)
        except OSError:
            return
        key = (st.st_mtime_ns, st.st_size)
        if key == self._stat_key:
            return
        self._stat_key = key
        try:
            text = self.target.playlist_file.read_text(errors="replace")
        except OSError:
            return
        playlist = parse_playlist(text)
        if playlist is None or not playlist.segments:
            return
        added = False
        for i, (_, duration) in enumerate(playlist.segments):
            msn = playlist.media_sequence + i
            if msn not in self.segments:
                self.segments[msn] = duration
                self.appeared.append((now, msn))
                added = True
        if added:
            if self.first_listed_at is None:
                self.first_listed_at = now
            self.edge_delays.append((now, now - self.t0 - self.media_total()))
            self.edge_listed.append((now, self.media_total()))

    def media_appeared_between(self, start: float, end: float) -> float:
        return sum(self.segments[msn] for t, msn in self.appeared if start < t <= end)

    def last_appeared_at(self) -> float | None:
        return self.appeared[-1][0] if self.appeared else None


async def watch_disk(probes: list[StreamProbe], stop: asyncio.Event, interval: float) -> None:
    """Poll every playlist file (stat first, read only on change) every ``interval`` s."""
    while not stop.is_set():
        now = time.monotonic()
        for probe in probes:
            probe.watch_disk(now)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    """GET ``url``: (status, body)."""
    async with http.get(url) as r:
        return r.status, await r.read()


def is_ts_segment(status: int, data: bytes) -> bool:
    """Whether a segment download succeeded as MPEG-TS (at least one packet, sync byte first)."""
    return status == 200 and len(data) >= 188 and data[0] == 0x47


async def wait_first_playable(
    http: aiohttp.ClientSession, probe: StreamProbe, deadline: float, interval: float = 0.25
) -> None:
    """Poll the playlist over HTTP until it lists a segment that downloads as MPEG-TS."""
    url = probe.target.playlist_url
    while time.monotonic() < deadline:
        try:
            status, body = await get(http, url)
            playlist = parse_playlist(body.decode(errors="replace")) if status == 200 else None
            if playlist and playlist.segments:
                seg_url = urllib.parse.urljoin(url, playlist.segments[0][0])
                seg_status, data = await get(http, seg_url)
                if is_ts_segment(seg_status, data):
                    probe.first_playable_at = time.monotonic()
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(interval)


async def view(
    http: aiohttp.ClientSession, probe: StreamProbe, stop: asyncio.Event, interval: float
) -> None:
    """One light viewer: reload the playlist every ``interval`` s (a player reloads about
    once per target duration); segments are not downloaded (see :func:`check_final`)."""
    url = probe.target.playlist_url
    while not stop.is_set():
        try:
            status, _ = await get(http, url)
            probe.http_polls += 1
            probe.http_last_status = status
            if status != 200:
                probe.http_errors += 1
        except (aiohttp.ClientError, TimeoutError):
            probe.http_polls += 1
            probe.http_errors += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def check_final(http: aiohttp.ClientSession, probe: StreamProbe) -> None:
    """At the end of the window the playlist must still load and its newest segment download."""
    url = probe.target.playlist_url
    try:
        status, body = await get(http, url)
        playlist = parse_playlist(body.decode(errors="replace")) if status == 200 else None
        if not playlist or not playlist.segments:
            probe.final_segment_ok = False
            probe.final_error = f"playlist: HTTP {status}, {len(body)} bytes"
            return
        seg_status, data = await get(http, urllib.parse.urljoin(url, playlist.segments[-1][0]))
        probe.final_segment_ok = is_ts_segment(seg_status, data)
        if not probe.final_segment_ok:
            probe.final_error = f"segment: HTTP {seg_status}, {len(data)} bytes"
    except (aiohttp.ClientError, TimeoutError) as exc:
        probe.final_segment_ok = False
        probe.final_error = f"{type(exc).__name__}: {exc}"
