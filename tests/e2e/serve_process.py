"""``liverelay serve`` as a subprocess, configured by ``LIVERELAY_*`` variables, for tests that
stop, kill and restart the whole service; and the ffmpeg processes a killed one leaves behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.conftest import fetch, free_port
from tests.polling import eventually


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
        process = self.process

        async def healthy() -> bool:
            assert process.returncode is None, self.log.read_text()
            with contextlib.suppress(aiohttp.ClientError):
                return (await fetch(f"{self.url}/healthz"))[0] == 200
            return False

        def log_text() -> str:
            return f"liverelay serve did not come up:\n{self.log.read_text()}"

        await eventually(healthy, 30, interval=0.2, message=log_text)

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
    with contextlib.suppress(AssertionError):
        await eventually(lambda: not orphans_of(tmp_path), within, interval=0.2)
    for pid in orphans_of(tmp_path):
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
