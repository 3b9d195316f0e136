"""``kill -9`` of the whole service during a recorded session: the recording survives.

``liverelay serve`` runs as a subprocess configured by ``LIVERELAY_*`` variables. It is killed
with SIGKILL while a publisher pushes; on the next start the recording left open must be closed,
``ready`` and playable from the first to the last segment it had listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.conftest import (
    Publisher,
    Sources,
    ended,
    fetch,
    free_port,
    push,
    wait_for_playlist,
)
from tests.e2e.outputs import decode_playlist
from workers.m3u8 import parse_media_playlist

pytestmark = pytest.mark.e2e


def liverelay_command(*args: str) -> list[str]:
    """The ``liverelay`` console script of this environment (or its module as a fallback)."""
    script = Path(sys.executable).with_name("liverelay")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "import sys; from api.cli import main; sys.exit(main())", *args]


class Service:
    """One ``liverelay serve`` subprocess and the environment it runs with."""

    def __init__(self, data_dir: Path) -> None:
        self.http_port, self.rtmp_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "LIVERELAY_DATA_DIR": str(data_dir),
            "LIVERELAY_HTTP_HOST": "127.0.0.1",
            "LIVERELAY_HTTP_PORT": str(self.http_port),
            "LIVERELAY_RTMP_HOST": "127.0.0.1",
            "LIVERELAY_RTMP_PORT": str(self.rtmp_port),
            "LIVERELAY_METRICS_PORT": "0",
            "LIVERELAY_HLS_SEGMENT_SECONDS": "1",
        }
        self.log = data_dir / "serve.log"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def command(self, *args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            *liverelay_command(*args), env=self.env, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0
        return out.decode()

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *liverelay_command("serve"), env=self.env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                if (await fetch(f"{self.url}/healthz"))[0] == 200:
                    return
            assert self.process.returncode is None, self.log.read_text()
            await asyncio.sleep(0.2)
        raise AssertionError(f"liverelay serve did not come up:\n{self.log.read_text()}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    svc = Service(tmp_path / "data")
    try:
        yield svc
    finally:
        await svc.stop()
        await reap_orphans(tmp_path)


def orphans_of(tmp_path: Path) -> list[int]:
    """ffmpeg processes a killed service left behind: their command lines name our data dir."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes()
            if str(tmp_path).encode() in cmdline and b"ffmpeg" in cmdline:
                found.append(int(entry.name))
    return found


async def reap_orphans(tmp_path: Path, within: float = 10.0) -> None:
    """Wait for the orphaned outputs to end (stdin EOF makes them finish), else kill them."""
    deadline = time.monotonic() + within
    pids = orphans_of(tmp_path)
    while pids and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        pids = orphans_of(tmp_path)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def call(service: Service, token: str, method: str, path: str, **kwargs: object) -> dict:
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method, f"{service.url}{path}", headers={"Authorization": token}, **kwargs
        ) as reply,
    ):
        assert reply.status < 300, await reply.text()
        body: dict = await reply.json()
        return body


async def test_kill_9_mid_session_then_restart_keeps_a_playable_recording(
    service: Service,
    tmp_path: Path,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
) -> None:
    token = json.loads(await service.command("apikey", "create", "--name", "crash"))["token"]
    await service.start()
    stream = await call(
        service, token, "POST", "/v1/livestreams", json={"name": "c", "record": True}
    )
    upstream = f"rtmp://127.0.0.1:{service.rtmp_port}/live/{stream['streamKey']}"
    publisher = await push(ffmpeg_exe, sources.av, upstream, loop=True)
    publishers.append(publisher)
    recordings = f"/v1/livestreams/{stream['id']}/recordings"

    deadline = time.monotonic() + 30
    listed: list = []
    while len(listed) < 4:
        assert time.monotonic() < deadline, "the recording never reached 4 segments"
        await asyncio.sleep(0.2)
        data = (await call(service, token, "GET", recordings))["data"]
        if data:
            status, body, _ = await fetch(data[0]["recordingUrl"])
            listed = parse_media_playlist(body.decode()) if status == 200 else []
    assert data[0]["status"] == "recording"

    service.kill()  # SIGKILL: no cleanup at all
    await service.process.wait()  # type: ignore[union-attr]
    publisher.kill()
    await publisher.process.wait()
    await reap_orphans(tmp_path)
    at_kill = parse_media_playlist(
        (tmp_path / "data" / "recordings" / data[0]["id"] / "index.m3u8").read_text()
    )
    assert len(at_kill) >= len(listed)

    await service.start()
    [recording] = (await call(service, token, "GET", recordings))["data"]
    assert recording["id"] == data[0]["id"]
    assert recording["status"] == "ready" and recording["error"] is None, recording
    assert recording["endedAt"] and recording["bytes"] > 0, recording
    playlist = await wait_for_playlist(recording["recordingUrl"], ended, timeout=5)
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in playlist
    segments = parse_media_playlist(playlist)
    assert [s.name for s in segments] == [s.name for s in at_kill]
    decoded = await decode_playlist(recording["recordingUrl"], playlist)
    assert (decoded.video_codec, decoded.audio_codec) == ("h264", "aac")
    total = sum(s.duration for s in segments)
    assert abs(recording["duration"] - total) < 0.01
    assert decoded.duration >= total - 1.0, (decoded, total)
    assert decoded.video_frames >= 30 * (total - 1.0)
