"""One ffmpeg child process: own process group, progress on stdout, stderr ring buffer, stop ladder.

The child runs in its own session (``start_new_session=True``), so signals go to its whole
process group and a Ctrl-C on the terminal does not reach it before liverelay decides. Its stdin
is the media pipe; stdout carries ``-progress pipe:1`` blocks; stderr is kept as a bounded,
redacted tail for diagnosis. Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

from workers.argv import format_argv
from workers.media_pipes import MediaPipe

log = logging.getLogger(__name__)

ProgressListener = Callable[[Mapping[str, str]], None]

_READ_CHUNK = 65_536
_MAX_LINE = 4_096
"""Longer stderr/progress lines are cut (a child spewing without newlines cannot grow memory)."""
_READER_DRAIN_TIMEOUT = 2.0
"""After exit, how long the pipe readers may take to reach EOF (a grandchild could hold them)."""
_PROGRESS_KEYS = ("out_time_us", "total_size")
"""Progress advanced when one of these changed; ``N/A`` counts as no value."""
_LINE_BREAK = re.compile(rb"\r\n?|\n")
_LOG_CONTEXT = re.compile(r"\[([^\]\s]+) @ 0x[0-9a-fA-F]+\] ")
_NOISE = ("Conversion failed!", "Exiting with exit code", "Exiting normally")


def _identity(text: str) -> str:
    return text


class ProcessError(RuntimeError):
    """Base of the errors raised by :class:`FFmpegProcess`."""


class OutputProcessExited(ProcessError):
    """The child exited (or closed its stdin) while liverelay still wanted it running.

    ``str()`` is short and redacted, e.g. ``exited with code 1: Connection refused``.
    """

    def __init__(self, name: str, returncode: int | None, stderr_tail: Sequence[str]) -> None:
        self.name = name
        """The process name given to :class:`FFmpegProcess`."""
        self.returncode = returncode
        """Exit status (negative: killed by that signal), ``None`` if it had not exited yet."""
        self.stderr_tail = list(stderr_tail)
        """The redacted last stderr lines."""
        message = describe_exit(returncode)
        summary = summarize_stderr(self.stderr_tail)
        super().__init__(f"{message}: {summary}" if summary else message)


def describe_exit(returncode: int | None) -> str:
    """``exited with code 1`` / ``killed by SIGKILL`` / ``closed its input`` (still running)."""
    if returncode is None:
        return "closed its input"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def summarize_stderr(lines: Iterable[str]) -> str | None:
    """The most telling stderr line: the last one that is not ffmpeg's closing boilerplate,
    without the ``@ 0x...`` pointer of its log context."""
    for line in reversed(list(lines)):
        line = line.strip()
        if line and not line.startswith(_NOISE):
            return _LOG_CONTEXT.sub(r"[\1] ", line)
    return None


class FFmpegProcess:
    """An ffmpeg (or any) child process fed through stdin, supervised from the event loop.

    Usage: ``await start()``, then ``await write(data)`` as media arrives, then ``await stop()``
    (closes stdin, so ffmpeg finalizes its output, then escalates to SIGTERM and SIGKILL of the
    process group). ``stop()`` always reaps the child and is safe to call repeatedly or after
    the child exited on its own.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        redact: Callable[[str], str] = _identity,
        stderr_lines: int = 40,
        clock: Callable[[], float] = time.monotonic,
        stdout_sink: Callable[[bytes], None] | None = None,
        media_pipes: Sequence[MediaPipe] = (),
    ) -> None:
        """``stdout_sink``: stdout is media (not ``-progress`` blocks), handed over in chunks
        as it is read; every chunk counts as progress. ``media_pipes``: more media outputs,
        each pipe's write end passed on to the child (read like stdout's media; the process
        owns the pipes from here on)."""
        if not argv:
            raise ValueError("FFmpegProcess needs a non-empty argv")
        self.argv = list(argv)
        """The command line (NOT redacted: never log it directly)."""
        self.name = name
        """Short name used in logs and errors, e.g. ``hls:abc123``."""
        self._redact = redact
        self._clock = clock
        self._stderr: deque[str] = deque(maxlen=stderr_lines)
        self._proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._block: dict[str, str] = {}
        self._listeners: list[ProgressListener] = []
        self._stdout_sink = stdout_sink
        self._media_pipes = list(media_pipes)
        self._stop_lock = asyncio.Lock()
        self.progress: dict[str, str] = {}
        """The last complete ``-progress`` block (``out_time_us``, ``total_size``, ...)."""
        self.progress_count = 0
        """How many times progress advanced."""
        self.last_progress_at = clock()
        """Clock time progress last advanced (``out_time_us``/``total_size`` changed), or when
        the process started."""

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Spawn the child in a new session with stdin, stdout and stderr piped."""
        if self._proc is not None:
            raise ProcessError(f"{self.name}: already started")
        log.info("starting %s: %s", self.name, format_argv(self.argv, self._redact))
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                pass_fds=tuple(p.write_fd for p in self._media_pipes),
            )
        except BaseException:
            for pipe in self._media_pipes:
                pipe.close_read()
            raise
        finally:
            for pipe in self._media_pipes:
                pipe.close_write()
        self.last_progress_at = self._clock()
        assert self._proc.stdout is not None and self._proc.stderr is not None
        stdout = (
            self._pump_media(self._proc.stdout, self._stdout_sink)
            if self._stdout_sink is not None
            else self._pump(self._proc.stdout, self._on_progress_line)
        )
        self._readers = [
            asyncio.create_task(stdout),
            asyncio.create_task(self._pump(self._proc.stderr, self._on_stderr_line)),
            *(asyncio.create_task(self._pump_pipe(pipe)) for pipe in self._media_pipes),
        ]

    @property
    def pid(self) -> int | None:
        """The child's pid (also its process group id), ``None`` before :meth:`start`."""
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        """Exit status once reaped (negative: killed by that signal), else ``None``."""
        return None if self._proc is None else self._proc.returncode

    @property
    def stdin(self) -> asyncio.StreamWriter:
        """The media pipe. Prefer :meth:`write`, which turns a dead child into an error."""
        proc = self._started()
        assert proc.stdin is not None
        return proc.stdin

    async def write(self, data: bytes) -> None:
        """Write ``data`` to stdin and wait for the pipe to drain (backpressure).

        Raises :class:`OutputProcessExited` when the child no longer reads its stdin (it exited:
        ``BrokenPipeError``/``ConnectionResetError``) or stdin was already closed.
        """
        stdin = self.stdin
        if stdin.is_closing():
            raise OutputProcessExited(self.name, self.returncode, self.stderr_tail())
        try:
            stdin.write(data)
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            # Give the child a moment to be reaped so the error carries its exit code.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wait(), 1.0)
            raise OutputProcessExited(self.name, self.returncode, self.stderr_tail()) from exc

    async def wait(self) -> int:
        """Wait for the child to exit, then for its stdout/stderr to be read to the end."""
        returncode = await self._started().wait()
        await self._finish_readers()
        return returncode

    async def stop(
        self,
        *,
        graceful: Literal["eof", "q"] = "eof",
        grace: float = 5.0,
        term_grace: float = 3.0,
    ) -> int | None:
        """Stop the child and reap it; return its exit status (``None`` if never started).

        The ladder: ``graceful`` ("eof" closes stdin, so ffmpeg flushes and writes e.g.
        ``EXT-X-ENDLIST``; "q" types ``q`` for a child whose stdin is not media) -> wait ``grace``
        seconds -> SIGTERM to the process group -> wait ``term_grace`` -> SIGKILL to the group.
        Idempotent; concurrent callers share one ladder. If the caller is cancelled midway the
        group is SIGKILLed before the cancellation propagates, so nothing is left running.
        """
        if self._proc is None:
            return None
        async with self._stop_lock:
            if self._proc.returncode is None:
                try:
                    await self._ladder(graceful, grace, term_grace)
                except asyncio.CancelledError:
                    self._signal_group(signal.SIGKILL)
                    raise
            return await self.wait()

    # -- observation --------------------------------------------------------------------------

    def stderr_tail(self) -> list[str]:
        """The last ``stderr_lines`` stderr lines, already redacted."""
        return list(self._stderr)

    def add_progress_listener(self, listener: ProgressListener) -> None:
        """Call ``listener(block)`` each time progress advances (from the stdout reader task)."""
        self._listeners.append(listener)

    def exit_error(self) -> OutputProcessExited:
        """An :class:`OutputProcessExited` describing how the child ended (to raise)."""
        return OutputProcessExited(self.name, self.returncode, self.stderr_tail())

    # -- internals ----------------------------------------------------------------------------

    def _started(self) -> asyncio.subprocess.Process:
        if self._proc is None:
            raise ProcessError(f"{self.name}: not started")
        return self._proc

    async def _ladder(self, graceful: str, grace: float, term_grace: float) -> None:
        await self._ask_to_finish(graceful)
        if await self._exited_within(grace):
            return
        log.warning("%s still running %.1f s after %s; sending SIGTERM", self.name, grace, graceful)
        self._signal_group(signal.SIGTERM)
        if await self._exited_within(term_grace):
            return
        log.warning("%s ignored SIGTERM for %.1f s; sending SIGKILL", self.name, term_grace)
        self._signal_group(signal.SIGKILL)

    async def _ask_to_finish(self, graceful: str) -> None:
        stdin = self.stdin
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if graceful == "q" and not stdin.is_closing():
                stdin.write(b"q")
            stdin.close()

    async def _exited_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._started().wait(), seconds)
        except TimeoutError:
            return False
        return True

    def _signal_group(self, signum: signal.Signals) -> None:
        proc = self._started()
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)

    async def _finish_readers(self) -> None:
        # asyncio.wait (not gather): a cancelled caller must not cancel the readers with it
        if not self._readers:
            return
        _, pending = await asyncio.wait(self._readers, timeout=_READER_DRAIN_TIMEOUT)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        for task in self._readers:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                log.error("%s: pipe reader failed: %s", self.name, self._redact(repr(error)))

    async def _pump(self, stream: asyncio.StreamReader, on_line: Callable[[str], None]) -> None:
        """Split ``stream`` into lines (``\\n``, ``\\r\\n`` or ``\\r``) until EOF; a line longer
        than ``_MAX_LINE`` bytes is cut and the rest of it skipped."""
        pending = b""
        skipping = False  # inside the rest of a line that was already cut
        while chunk := await stream.read(_READ_CHUNK):
            *lines, pending = _LINE_BREAK.split(pending + chunk)
            for raw in lines:
                if skipping:
                    skipping = False
                elif raw:
                    on_line(raw[:_MAX_LINE].decode("utf-8", "replace"))
            if len(pending) > _MAX_LINE:
                if not skipping:
                    on_line(pending[:_MAX_LINE].decode("utf-8", "replace"))
                    skipping = True
                pending = b""
            await asyncio.sleep(0)  # a child spewing output must not starve the loop
        if pending and not skipping:
            on_line(pending.decode("utf-8", "replace"))

    async def _pump_media(
        self, stream: asyncio.StreamReader, sink: Callable[[bytes], None]
    ) -> None:
        """Hand ``stream`` to ``sink`` chunk by chunk until EOF; each chunk is progress."""
        while chunk := await stream.read(_READ_CHUNK):
            sink(chunk)
            self._complete_block({"total_size": str(self.progress_count + 1)})
            await asyncio.sleep(0)

    async def _pump_pipe(self, pipe: MediaPipe) -> None:
        """Read one extra media pipe to EOF into its sink."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_READ_CHUNK)
        fd, pipe.read_fd = pipe.read_fd, -1
        file = os.fdopen(fd, "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), file
        )
        try:
            await self._pump_media(reader, pipe.sink)
        finally:
            transport.close()

    def _on_stderr_line(self, line: str) -> None:
        line = self._redact(line.rstrip())
        self._stderr.append(line)
        log.debug("%s stderr: %s", self.name, line)

    def _on_progress_line(self, line: str) -> None:
        key, sep, value = line.strip().partition("=")
        if not sep:
            return
        self._block[key] = value
        if key == "progress":
            block, self._block = self._block, {}
            self._complete_block(block)

    def _complete_block(self, block: dict[str, str]) -> None:
        advanced = any(
            block.get(k, "N/A") != "N/A" and block.get(k) != self.progress.get(k)
            for k in _PROGRESS_KEYS
        )
        self.progress = block
        if not advanced:
            return
        self.last_progress_at = self._clock()
        self.progress_count += 1
        for listener in self._listeners:
            try:
                listener(block)
            except Exception:  # a broken listener must not stop the stdout pipe being drained
                log.exception("%s: progress listener failed", self.name)
