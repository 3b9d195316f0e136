"""End-to-end fixtures: the whole app on loopback ports, real ffmpeg publishers, HLS decoding.

Nothing here is faked: the app runs with its real database (SQLite and PostgreSQL), its real
RTMP listener and its real ffmpeg workers; publishers are ffmpeg (and GStreamer) processes; the
HLS output is fetched over HTTP and decoded with PyAV.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import av
import imageio_ffmpeg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import update

from api import queries
from api.app import create_app
from api.auth import issue_token
from api.keys import DB_SESSIONMAKER
from api.models import LiveStream
from config import Secret, Settings
from tests.polling import eventually
from workers.m3u8 import parse_media_playlist

SEGMENT_SECONDS = 1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def make_source(ffmpeg: str, path: Path, *, video: bool, audio: bool, seconds: int) -> Path:
    """A small FLV like an encoder would push: 640x360@30 H.264 with a 1 s GOP, AAC 48 kHz."""
    argv = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y"]
    if video:
        argv += ["-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=30:duration={seconds}"]
    if audio:
        argv += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    if video:
        argv += [
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "30",
            "-keyint_min",
            "30",
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-b:v",
            "800k",
        ]
    if audio:
        argv += ["-c:a", "aac", "-b:a", "96k"]
    subprocess.run([*argv, "-f", "flv", str(path)], check=True, timeout=120)
    return path


@dataclass(frozen=True)
class Sources:
    av: Path
    audio_only: Path
    video_only: Path


@pytest.fixture(scope="session")
def sources(ffmpeg_exe: str, tmp_path_factory: pytest.TempPathFactory) -> Sources:
    directory = tmp_path_factory.mktemp("sources")
    return Sources(
        av=make_source(ffmpeg_exe, directory / "av.flv", video=True, audio=True, seconds=6),
        audio_only=make_source(ffmpeg_exe, directory / "a.flv", video=False, audio=True, seconds=5),
        video_only=make_source(ffmpeg_exe, directory / "v.flv", video=True, audio=False, seconds=5),
    )


@dataclass
class LiveServer:
    """The running app and what tests need to drive it."""

    settings: Settings
    http_url: str
    rtmp_port: int
    app: web.Application
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": self.token}

    async def set_reconnect_window(self, stream_id: str, seconds: int) -> None:
        """Set the stream's reconnect window directly in the database (takes effect at the
        next publish)."""
        async with self.app[DB_SESSIONMAKER]() as session, session.begin():
            await session.execute(
                update(LiveStream)
                .where(LiveStream.id == stream_id)
                .values(reconnect_window_seconds=seconds)
            )

    async def create_stream(self, **body: Any) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{self.http_url}/v1/livestreams",
                json={"name": "e2e", **body},
                headers=self.headers,
            ) as response,
        ):
            assert response.status == 201, await response.text()
            result: dict[str, Any] = await response.json()
            return result


async def start_live_server(
    settings: Settings,
    http_port: int,
    *,
    prepare: Callable[[web.Application], None] | None = None,
) -> tuple[TestServer, LiveServer]:
    """Start the app of ``settings`` on ``http_port``; ``prepare`` may change the app before it
    starts (e.g. add a context)."""
    app = create_app(settings)
    if prepare is not None:
        prepare(app)
    server = TestServer(app, host="127.0.0.1", port=http_port)
    await server.start_server()
    async with app[DB_SESSIONMAKER]() as session, session.begin():
        account = await queries.create_account(session, "e2e")
    token = issue_token(account.apikey, account.secret, 3600)
    from api.keys import RTMP_PORT

    live = LiveServer(settings, f"http://127.0.0.1:{http_port}", app[RTMP_PORT], app, token)
    return server, live


def e2e_settings(tmp_path: Path, database_url: str, http_port: int, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        data_dir=tmp_path,
        database_url=Secret(database_url),
        http_host="127.0.0.1",
        http_port=http_port,
        rtmp_host="127.0.0.1",
        rtmp_port=0,
        metrics_port=0,
        hls_segment_seconds=SEGMENT_SECONDS,
        hls_list_size=30,
    )
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, sqlite_url: str, **overrides: Any) -> AsyncIterator[LiveServer]:
    """The whole app on loopback (SQLite backend) with ``overrides`` of its settings."""
    port = free_port()
    server, live = await start_live_server(
        e2e_settings(tmp_path, sqlite_url, port, **overrides), port
    )
    try:
        yield live
    finally:
        await server.close()


@pytest.fixture
async def live_server(tmp_path: Path, sqlite_url: str) -> AsyncIterator[LiveServer]:
    """The whole service on loopback, SQLite backend."""
    async with serving(tmp_path, sqlite_url) as live:
        yield live


@dataclass
class Publisher:
    process: asyncio.subprocess.Process
    started_at: float

    async def finish(self, timeout: float = 60) -> tuple[int, str]:
        _, stderr = await asyncio.wait_for(self.process.communicate(), timeout)
        return int(self.process.returncode or 0), stderr.decode(errors="replace")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()


async def push(
    ffmpeg: str,
    source: Path,
    url: str,
    *,
    realtime: bool = True,
    loop: bool = False,
    output_options: tuple[str, ...] = (),
) -> Publisher:
    """Start an ffmpeg publisher of ``source`` to ``url`` (``-re``: at the speed of a camera),
    with ``output_options`` before the URL (e.g. TLS options for ``rtmps://``)."""
    argv = [ffmpeg, "-hide_banner", "-loglevel", "warning", "-nostdin"]
    if realtime:
        argv.append("-re")
    if loop:
        argv += ["-stream_loop", "-1"]
    argv += ["-i", str(source), "-c", "copy", "-f", "flv", *output_options, url]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    return Publisher(process, time.monotonic())


@pytest.fixture
async def publishers() -> AsyncIterator[list[Publisher]]:
    """Publishers started by a test; any still running at the end is killed (by PID)."""
    started: list[Publisher] = []
    yield started
    for publisher in started:
        if publisher.process.returncode is None:
            publisher.kill()
            await publisher.process.wait()


async def fetch(url: str) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.read(), dict(response.headers)


async def wait_for_playlist(
    url: str, predicate: Callable[[str], bool], *, timeout: float = 30
) -> str:
    """Poll ``url`` until it answers 200 with a playlist satisfying ``predicate``."""
    last = ""

    async def satisfied() -> str | None:
        nonlocal last
        status, body, _ = await fetch(url)
        if status == 200:
            last = body.decode()
            return last if predicate(last) else None
        return None

    def message() -> str:
        return f"playlist at {url} never satisfied the condition; last:\n{last}"

    return await eventually(satisfied, timeout, interval=0.1, message=message)


def segment_count(text: str) -> int:
    return len(parse_media_playlist(text))


def has_segment(text: str) -> bool:
    return segment_count(text) > 0


def ended(text: str) -> bool:
    return "#EXT-X-ENDLIST" in text


@dataclass(frozen=True)
class DecodedHLS:
    video_codec: str | None
    audio_codec: str | None
    width: int | None
    height: int | None
    video_frames: int
    audio_frames: int
    duration: float


async def download_and_decode(playlist_url: str, playlist: str) -> DecodedHLS:
    """Fetch every segment of ``playlist`` and decode all of it with PyAV (errors raise):
    MPEG-TS segments (standard mode), or fMP4 segments after their one initialization segment
    (low-latency mode)."""
    base = playlist_url.rsplit("/", 1)[0]
    segments = parse_media_playlist(playlist)
    inits = {segment.init for segment in segments}
    assert len(inits) <= 1, f"one initialization segment expected, not {inits}"
    init = next(iter(inits), None)
    data = bytearray()
    if init is not None:
        status, body, _ = await fetch(f"{base}/{init}")
        assert status == 200, f"initialization segment {init}: HTTP {status}"
        data += body
    media_type = "video/mp2t" if init is None else "video/iso.segment"
    for segment in segments:
        status, body, headers = await fetch(f"{base}/{segment.name}")
        assert status == 200, f"segment {segment.name}: HTTP {status}"
        assert headers["Content-Type"].startswith(media_type)
        data += body
    container = "mpegts" if init is None else "mp4"
    return await asyncio.to_thread(decode_ts, bytes(data), container)


def decode_ts(data: bytes, container_format: str = "mpegts") -> DecodedHLS:
    """Decode MPEG-TS (or, with ``container_format`` ``mp4``, fragmented MP4) ``data``."""
    with av.open(io.BytesIO(data), format=container_format) as container:
        video = next(iter(container.streams.video), None)
        audio = next(iter(container.streams.audio), None)
        counts = {"video": 0, "audio": 0}
        first: float | None = None
        last = 0.0
        for packet in container.demux():
            if packet.pts is None or packet.stream.type not in counts:
                continue
            for _frame in packet.decode():
                counts[packet.stream.type] += 1
            t = float(packet.pts * packet.time_base)
            first = t if first is None else min(first, t)
            last = max(last, t + float((packet.duration or 0) * packet.time_base))
    return DecodedHLS(
        video_codec=video.codec_context.name if video else None,
        audio_codec=audio.codec_context.name if audio else None,
        width=video.codec_context.width if video else None,
        height=video.codec_context.height if video else None,
        video_frames=counts["video"],
        audio_frames=counts["audio"],
        duration=last - (first or 0.0),
    )
