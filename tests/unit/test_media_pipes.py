"""Extra media pipes of a child process: what the child writes to its own descriptor reaches
the sink, in order and whole, and no descriptor is left open."""

from __future__ import annotations

import os
import sys

import pytest

from workers.media_pipes import MediaPipe
from workers.process import FFmpegProcess


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


async def test_a_child_writes_media_to_each_pipe() -> None:
    before = _open_fds()
    first: list[bytes] = []
    second: list[bytes] = []
    pipes = [MediaPipe.open(first.append), MediaPipe.open(second.append)]
    fds = [p.write_fd for p in pipes]
    script = (
        "import os, sys\n"
        f"os.write({fds[0]}, b'a' * 200000)\n"
        f"os.write({fds[1]}, b'second')\n"
        "sys.stdin.read()\n"
    )
    process = FFmpegProcess([sys.executable, "-c", script], name="pipes", media_pipes=pipes)
    await process.start()
    assert all(p.write_fd == -1 for p in pipes), "the parent's write ends are closed"
    assert await process.stop() == 0
    assert b"".join(first) == b"a" * 200000
    assert b"".join(second) == b"second"
    assert process.progress_count > 0, "media on a pipe is progress"
    assert _open_fds() <= before


async def test_pipes_are_closed_when_the_child_cannot_start() -> None:
    before = _open_fds()
    pipes = [MediaPipe.open(lambda _: None)]
    process = FFmpegProcess(["/nonexistent/ffmpeg"], name="missing", media_pipes=pipes)
    with pytest.raises(FileNotFoundError):
        await process.start()
    assert _open_fds() <= before
