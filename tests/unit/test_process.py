"""FFmpegProcess against misbehaving children, and against the real ffmpeg."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from config.settings import Settings
from tests.polling import eventually
from workers.argv import hls_argv, make_redactor, restream_argv, url_secrets
from workers.ffmpeg_binary import FFmpegNotFound, ffmpeg_version, resolve_ffmpeg
from workers.process import (
    FFmpegProcess,
    OutputProcessExited,
    ProcessError,
    describe_exit,
    summarize_stderr,
)

FIXTURES = Path(__file__).parent / "fixtures"


def child(script: str, *args: str) -> list[str]:
    return [sys.executable, str(FIXTURES / script), *args]


def group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is still in process group ``pgid``."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@pytest.fixture
def ffmpeg() -> str:
    return resolve_ffmpeg(Settings())


# -- misbehaving children -------------------------------------------------------------------


async def test_exits_early_with_code_3_and_redacted_tail() -> None:
    redactor = make_redactor(["SECRETKEY"])
    proc = FFmpegProcess(child("exit_early.py"), name="early", redact=redactor)
    await proc.start()
    assert proc.pid is not None
    assert await proc.wait() == 3
    tail = proc.stderr_tail()
    assert tail[-1] == "Conversion failed!"
    assert not any("SECRETKEY" in line or "hunter2" in line for line in tail)
    assert str(proc.exit_error()) == (
        "exited with code 3: Error opening output rtmp://***@192.0.2.1/app/***: refused"
    )
    assert await proc.stop() == 3  # safe after exit, and idempotent
    assert await proc.stop() == 3


async def test_write_after_exit_raises_output_process_exited() -> None:
    proc = FFmpegProcess(child("exit_early.py"), name="early")
    await proc.start()
    await proc.wait()
    with pytest.raises(OutputProcessExited, match="exited with code 3"):
        for _ in range(64):  # the first writes may land in the pipe buffer
            await proc.write(b"x" * 65_536)
    assert proc.returncode == 3


async def test_hang_ignoring_eof_is_stopped_by_sigterm(caplog: pytest.LogCaptureFixture) -> None:
    proc = FFmpegProcess(child("hang.py"), name="hang")
    await proc.start()
    await eventually(lambda: "ready" in proc.stderr_tail())
    await proc.write(b"media")
    returncode = await proc.stop(grace=0.3, term_grace=5.0)
    assert returncode == -signal.SIGTERM
    assert "got EOF, hanging" in proc.stderr_tail()  # EOF was delivered first
    assert "sending SIGTERM" in caplog.text
    assert "SIGKILL" not in caplog.text
    assert describe_exit(returncode) == "killed by SIGTERM"


async def test_ignoring_sigterm_reaches_sigkill_and_the_group_is_gone() -> None:
    proc = FFmpegProcess(child("ignore_term.py"), name="stubborn")
    await proc.start()
    assert proc.pid is not None
    pgid = proc.pid
    assert os.getpgid(pgid) == pgid  # its own process group
    await eventually(lambda: any(line.startswith("ready") for line in proc.stderr_tail()))
    grandchild = int(proc.stderr_tail()[0].split("=")[1])
    assert os.getpgid(grandchild) == pgid
    started = time.monotonic()
    assert await proc.stop(grace=0.2, term_grace=0.2) == -signal.SIGKILL
    assert time.monotonic() - started < 5
    await eventually(lambda: not group_alive(pgid), within=3)
    with pytest.raises(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)  # noqa: ASYNC222 - WNOHANG: not blocking


async def test_concurrent_stops_share_one_ladder() -> None:
    proc = FFmpegProcess(child("hang.py"), name="hang")
    await proc.start()
    await eventually(lambda: "ready" in proc.stderr_tail())
    results = await asyncio.gather(*(proc.stop(grace=0.2, term_grace=2) for _ in range(3)))
    assert results == [-signal.SIGTERM] * 3


async def test_cancelled_stop_kills_the_group() -> None:
    proc = FFmpegProcess(child("ignore_term.py"), name="stubborn")
    await proc.start()
    await eventually(lambda: any(line.startswith("ready") for line in proc.stderr_tail()))
    stopping = asyncio.create_task(proc.stop(grace=10, term_grace=10))
    await eventually(lambda: proc.stdin.is_closing())  # the ladder began: EOF, then its grace
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert await asyncio.wait_for(proc.wait(), 3) == -signal.SIGKILL


async def test_spewing_stderr_keeps_a_bounded_tail_and_the_loop_responsive() -> None:
    redact = make_redactor(["SECRETKEY"])
    handled = 0  # stderr lines the process handled (each goes through its redactor)

    def counting_redact(text: str) -> str:
        nonlocal handled
        handled += 1
        return redact(text)

    proc = FFmpegProcess(
        child("spew.py", "200000"), name="spew", stderr_lines=10, redact=counting_redact
    )
    # Between two turns of another task on the loop, the stderr reader handles one read at
    # most (64 KiB, about 2,400 of these lines): it yields to the loop after every read.
    seen: list[int] = []

    async def ticker() -> None:
        while True:
            await asyncio.sleep(0)
            seen.append(handled)

    ticking = asyncio.create_task(ticker())
    await proc.start()
    assert await asyncio.wait_for(proc.wait(), 20) == 0
    ticking.cancel()
    tail = proc.stderr_tail()
    assert len(tail) == 10
    assert tail[-1] == "last line"
    assert tail[-2] == "x" * 4096  # an endless line is cut
    assert tail[-3] == "spew line 199999 with ***"
    assert handled >= 200_000
    most = max(b - a for a, b in itertools.pairwise(seen))
    assert most < 10_000, f"{most} lines handled without the loop running anything else"


async def test_progress_blocks_advance_last_progress_at() -> None:
    proc = FFmpegProcess(child("progress.py", "advance", "0.05"), name="prog")
    seen: list[str] = []
    proc.add_progress_listener(lambda block: seen.append(block["out_time_us"]))
    await proc.start()
    started_at = proc.last_progress_at
    await eventually(lambda: proc.progress_count >= 3)
    assert proc.last_progress_at > started_at
    assert proc.progress["progress"] == "continue"
    assert int(proc.progress["out_time_us"]) >= 300_000
    assert seen[:3] == ["100000", "200000", "300000"]
    assert await proc.stop(grace=3) == 0  # EOF is enough
    assert proc.progress["progress"] == "end"


async def test_repeated_progress_values_do_not_count() -> None:
    proc = FFmpegProcess(child("progress.py", "still", "0.02"), name="still")
    await proc.start()
    await eventually(lambda: proc.progress.get("progress") == "continue")
    assert await proc.stop(grace=3) == 0  # EOF: the child repeats its value once more, exits
    assert proc.progress["progress"] == "end"  # every block was read, the repeated last one too
    assert proc.progress_count == 1  # only the first value (0) is an advance


async def test_api_before_start() -> None:
    proc = FFmpegProcess(child("hang.py"), name="idle")
    assert proc.pid is None and proc.returncode is None
    assert await proc.stop() is None
    with pytest.raises(ProcessError, match="idle: not started"):
        await proc.write(b"x")
    with pytest.raises(ValueError):
        FFmpegProcess([], name="empty")


def test_summarize_stderr_skips_boilerplate_and_pointers() -> None:
    lines = [
        "[tcp @ 0x56335dfaea40] Connection to tcp://127.0.0.1:1 failed: Connection refused",
        "Conversion failed!",
        "",
    ]
    assert (
        summarize_stderr(lines)
        == "[tcp] Connection to tcp://127.0.0.1:1 failed: Connection refused"
    )
    assert summarize_stderr([]) is None


# -- the real ffmpeg ------------------------------------------------------------------------


async def make_flv(ffmpeg: str, seconds: int = 4) -> bytes:
    """A test FLV: H.264 (keyframe every second) + AAC, as a publisher would send it."""
    proc = await asyncio.create_subprocess_exec(
        ffmpeg,
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "30",
        "-c:a",
        "aac",
        "-t",
        str(seconds),
        "-f",
        "flv",
        "pipe:1",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert out.startswith(b"FLV")
    return out


async def test_real_ffmpeg_hls_from_stdin_ends_with_endlist(ffmpeg: str, tmp_path: Path) -> None:
    flv = await make_flv(ffmpeg)
    out = tmp_path / "hls"
    out.mkdir()
    argv = hls_argv(
        ffmpeg,
        segment_seconds=1,
        segment_pattern=str(out / "seg%06d.ts"),
        playlist_path=str(out / "ffmpeg.m3u8"),
        start_number=7,
    )
    proc = FFmpegProcess(argv, name="hls:test")
    await proc.start()
    for offset in range(0, len(flv), 32_768):
        await proc.write(flv[offset : offset + 32_768])
    assert await proc.stop(grace=10) == 0, proc.stderr_tail()
    playlist = (out / "ffmpeg.m3u8").read_text()
    assert playlist.rstrip().endswith("#EXT-X-ENDLIST")
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in playlist
    listed = [line for line in playlist.splitlines() if line.endswith(".ts")]
    assert listed[:2] == ["seg000007.ts", "seg000008.ts"]
    assert len(listed) >= 3
    assert len(set(listed)) == len(listed)
    for name in listed:
        assert (out / name).stat().st_size > 0
    assert not list(out.glob("*.tmp"))
    assert proc.progress["progress"] == "end"
    assert proc.progress_count >= 1  # at least the final block advanced out_time_us


async def test_real_ffmpeg_restream_times_out_on_a_stalled_target(ffmpeg: str) -> None:
    flv = await make_flv(ffmpeg, seconds=3)

    async def accept_and_say_nothing(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await reader.read()  # until ffmpeg gives up and closes
        w.close()
        await w.wait_closed()
        handled.set()

    handled = asyncio.Event()

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"rtmp://127.0.0.1:{port}/app/SECRETKEY"
    argv = restream_argv(ffmpeg, publish_url=url, rw_timeout_seconds=0.5)
    proc = FFmpegProcess(argv, name="restream:test", redact=make_redactor(url_secrets(url)))
    async with server:
        await proc.start()
        feeding = asyncio.create_task(proc.write(flv))  # ffmpeg connects once it probed the input
        returncode = await asyncio.wait_for(proc.wait(), 10)
        with pytest.raises(OutputProcessExited):
            await feeding
        await asyncio.wait_for(handled.wait(), 5)
    assert returncode != 0
    error = str(proc.exit_error())
    assert "Connection timed out" in error
    assert "SECRETKEY" not in error and "SECRETKEY" not in "".join(proc.stderr_tail())


# -- finding ffmpeg -------------------------------------------------------------------------


async def test_resolve_and_version(ffmpeg: str) -> None:
    assert os.access(ffmpeg, os.X_OK)
    assert (await ffmpeg_version(ffmpeg)).startswith("ffmpeg version")
    assert resolve_ffmpeg(Settings(ffmpeg=ffmpeg)) == ffmpeg


def test_resolve_rejects_a_missing_or_non_executable_binary(tmp_path: Path) -> None:
    with pytest.raises(FFmpegNotFound, match="does not exist"):
        resolve_ffmpeg(Settings(ffmpeg=str(tmp_path / "nope")))
    plain = tmp_path / "ffmpeg"
    plain.write_text("")
    plain.chmod(0o644)
    with pytest.raises(FFmpegNotFound, match="is not executable"):
        resolve_ffmpeg(Settings(ffmpeg=str(plain)))


async def test_version_of_something_that_is_not_ffmpeg(tmp_path: Path) -> None:
    with pytest.raises(FFmpegNotFound, match="cannot run ffmpeg"):
        await ffmpeg_version(str(tmp_path / "missing"))


async def test_a_stdout_sink_gets_the_media_bytes_and_each_chunk_is_progress() -> None:
    """With ``stdout_sink`` stdout is media (low-latency HLS): every byte reaches the sink in
    order, none is read as a ``-progress`` line, and each chunk advances progress."""
    payload = bytes(range(256)) * 1000 + b"\nprogress=end\n"
    script = "import sys; sys.stdout.buffer.write(bytes(range(256)) * 1000 + b'\\nprogress=end\\n')"
    received = bytearray()
    process = FFmpegProcess(
        [sys.executable, "-c", script], name="sink", stdout_sink=received.extend
    )
    blocks: list[object] = []
    process.add_progress_listener(blocks.append)
    await process.start()
    assert await process.wait() == 0
    assert bytes(received) == payload
    assert process.progress_count >= 1 and len(blocks) == process.progress_count
    assert "progress" not in process.progress
