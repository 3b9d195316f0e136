"""Helpers of the recording and restream end-to-end tests: RTMP receivers, a stalled ingest, an
RTMP ingest that records what clients send in ``connect`` and ``publish``, API polling and FLV
decoding."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import av

from ingest.rtmp import RTMPProtocolError, RTMPServerConnection
from ingest.rtmp.events import ConnectRequested, PublishRequested
from tests.e2e.conftest import DecodedHLS, LiveServer, decode_ts, fetch
from tests.polling import eventually
from workers.m3u8 import parse_media_playlist


@dataclass
class Receiver:
    """An ffmpeg listening for one RTMP publish on loopback and writing it to an FLV file."""

    port: int
    path: Path
    process: asyncio.subprocess.Process

    async def finish(self, timeout: float = 30) -> str:
        """Wait for the receiver to end (its publisher left); return its stderr."""
        _, stderr = await asyncio.wait_for(self.process.communicate(), timeout)
        return stderr.decode(errors="replace")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()


async def start_receiver(ffmpeg: str, port: int, path: Path) -> Receiver:
    """``ffmpeg -listen 1 -i rtmp://127.0.0.1:PORT/app/key -c copy out.flv``."""
    argv = [
        ffmpeg,
        "-hide_banner",
        "-loglevel",
        "warning",
        "-nostdin",
        "-y",
        "-listen",
        "1",
        "-f",
        "flv",
        "-i",
        f"rtmp://127.0.0.1:{port}/app/key",
        "-c",
        "copy",
        "-f",
        "flv",
        str(path),
    ]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    return Receiver(port, path, process)


@dataclass
class StalledIngest:
    """Accepts TCP connections and never reads from or writes to them."""

    server: asyncio.Server
    connections: list[asyncio.StreamWriter] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        for writer in self.connections:
            writer.close()
        self.server.close()
        await self.server.wait_closed()


@contextlib.asynccontextmanager
async def stalled_ingest() -> AsyncIterator[StalledIngest]:
    """A TCP server on loopback that takes connections and then ignores them."""
    stalled: StalledIngest

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stalled.connections.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    stalled = StalledIngest(server)
    try:
        yield stalled
    finally:
        await stalled.close()


@dataclass(frozen=True)
class Connected:
    """What one RTMP client sent: its ``connect`` and, if it got there, its ``publish``."""

    app: str
    tc_url: str | None
    publish_name: str | None = None
    publish_query: str = ""


@dataclass
class ConnectRecorder:
    """An RTMP ingest on loopback (liverelay's own sans-IO protocol) that accepts every
    ``connect`` and ``publish`` and records them in :attr:`seen`."""

    server: asyncio.Server | None = None
    seen: list[Connected] = field(default_factory=list)

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = RTMPServerConnection()
        with contextlib.suppress(RTMPProtocolError, OSError):
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    self._answer(conn, event)
                writer.write(conn.data_to_send())
        writer.close()

    def _answer(self, conn: RTMPServerConnection, event: object) -> None:
        if isinstance(event, ConnectRequested):
            self.seen.append(Connected(event.app, event.tc_url))
            conn.accept_connect(event.transaction_id)
        elif isinstance(event, PublishRequested):
            last = self.seen[-1]
            self.seen[-1] = Connected(last.app, last.tc_url, event.name, event.query)
            conn.accept_publish(event.stream_id)


@contextlib.asynccontextmanager
async def connect_recorder() -> AsyncIterator[ConnectRecorder]:
    """A :class:`ConnectRecorder` listening on 127.0.0.1 for the ``with`` block."""
    recorder = ConnectRecorder()
    recorder.server = await asyncio.start_server(recorder.serve, "127.0.0.1", 0)
    try:
        yield recorder
    finally:
        recorder.server.close()
        await recorder.server.wait_closed()


def target(port: int, key: str) -> dict[str, str]:
    """A restream target on loopback (``rtmp://127.0.0.1:PORT/app`` + key)."""
    return {"url": f"rtmp://127.0.0.1:{port}/app", "streamKey": key}


async def api(live: LiveServer, method: str, path: str, **kwargs: Any) -> Any:
    """One JSON API call (asserting a 2xx answer)."""
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{live.http_url}{path}", headers=live.headers, **kwargs) as reply,
    ):
        assert reply.status < 300, await reply.text()
        return await reply.json()


async def wait_for_api(
    live: LiveServer, path: str, predicate: Callable[[Any], bool], *, timeout: float = 30
) -> Any:
    """Poll ``GET path`` until ``predicate(body)`` holds; return that body."""
    body: Any = None

    async def satisfied() -> Any:
        nonlocal body
        body = await api(live, "GET", path)
        return body if predicate(body) else None

    def message() -> str:
        return f"GET {path} never satisfied the condition; last: {body}"

    return await eventually(satisfied, timeout, interval=0.1, message=message)


def target_states(stream: dict[str, Any]) -> dict[str, str]:
    """``{streamKey: status}`` of a stream's restream targets."""
    return {t["streamKey"]: t["status"] for t in stream["restream"]}


async def decode_playlist(playlist_url: str, playlist: str) -> DecodedHLS:
    """Fetch every segment (URIs resolved against the playlist URL) and decode it all."""
    data = bytearray()
    uris = [line for line in playlist.splitlines() if line and not line.startswith("#")]
    assert len(uris) == len(parse_media_playlist(playlist))
    for uri in uris:
        status, body, _ = await fetch(urljoin(playlist_url, uri))
        assert status == 200, f"{uri}: HTTP {status}"
        data += body
    return await asyncio.to_thread(decode_ts, bytes(data))


@dataclass(frozen=True)
class DecodedFLV:
    video_codec: str | None
    audio_codec: str | None
    video_frames: int
    duration: float


def decode_flv(path: Path) -> DecodedFLV:
    """Decode a whole FLV file with PyAV (errors raise)."""
    with av.open(str(path), format="flv") as container:
        video = next(iter(container.streams.video), None)
        audio = next(iter(container.streams.audio), None)
        frames = 0
        first: float | None = None
        last = 0.0
        for packet in container.demux():
            if packet.pts is None:
                continue
            decoded = packet.decode()
            if packet.stream.type == "video":
                frames += len(decoded)
            t = float(packet.pts * packet.time_base)
            first = t if first is None else min(first, t)
            last = max(last, t)
    return DecodedFLV(
        video.codec_context.name if video else None,
        audio.codec_context.name if audio else None,
        frames,
        last - (first or 0.0),
    )
