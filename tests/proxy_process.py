"""A Debian proxy (HAProxy, nginx) as a test's own process: found or failed in CI, its
configuration checked, started in the foreground, awaited until it listens on loopback, and
stopped by its PID."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.polling import eventually


def missing(message: str) -> NoReturn:
    """Fail in CI (``.ci/run`` installs the proxies: never hide a missing one there), skip
    elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def executable_or_fail(name: str, package: str) -> str:
    """The path of the program ``name`` (on PATH or in /usr/sbin)."""
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}",) if os.access(p, os.X_OK)), None
    )
    if found is None:
        missing(f"{name} not found (apt-get install {package})")
    return found


async def stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM (by PID): nginx's master stops its workers on it, which a SIGKILL of the master
    would leave running; SIGKILL only if it does not end in time."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.send_signal(signal.SIGKILL)
    await process.wait()


@contextlib.asynccontextmanager
async def running(
    argv: Sequence[str],
    *,
    check: Sequence[str],
    foreground: Sequence[str],
    ports: Sequence[int],
    exit_detail: Callable[[], str] | None = None,
    **streams: Any,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``argv`` + ``check`` must accept the configuration; then ``argv`` + ``foreground`` runs
    (``streams``: its stdout/stderr) until every loopback port of ``ports`` accepts a
    connection, and is stopped on leaving. ``exit_detail``: what to say if it exits early."""
    name = Path(argv[0]).name
    checked = await asyncio.create_subprocess_exec(
        *argv, *check, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await checked.communicate()
    assert checked.returncode == 0, output.decode()
    process = await asyncio.create_subprocess_exec(*argv, *foreground, **streams)
    try:

        def listening() -> bool:
            assert process.returncode is None, exit_detail() if exit_detail else f"{name} exited"
            for port in ports:
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) != 0:
                        return False
            return True

        await eventually(listening, 10, interval=0.05, message=f"{name} never listened")
        yield process
    finally:
        await stop(process)


@contextlib.asynccontextmanager
async def running_nginx(
    nginx: str, directory: Path, conf: Path, port: int
) -> AsyncIterator[asyncio.subprocess.Process]:
    """nginx with ``conf``, prefix and error log in ``directory``, in the foreground until
    ``port`` accepts (:func:`running`); its error log is what an early exit says."""
    error_log = directory / "error.log"
    argv = [nginx, "-p", str(directory), "-e", str(error_log), "-c", str(conf)]
    async with running(
        argv,
        check=["-t"],
        foreground=["-g", "daemon off;"],
        ports=[port],
        exit_detail=error_log.read_text,
    ) as process:
        yield process
