"""The one supervisor every output (HLS, recording, restream) runs under: the asyncio adapter
around :class:`~workers.output_state.OutputMachine`.

A :class:`Supervisor` calls ``run(ctx)`` over and over: ``run`` starts ffmpeg, feeds it and
returns or raises when it ends (:func:`workers.feed.run_process` is the usual body). Liveness is
"run ended OR no progress for ``stall_seconds``"; a failed attempt is retried after a capped,
jittered exponential backoff (:mod:`workers.backoff`), forever unless ``max_retries`` is set or
``run`` raises :class:`PermanentOutputError`. A run that returns :attr:`RunEnd.INPUT_ENDED` (the
publish ended and everything was delivered) leaves the output ``finished``. Every state change
is an event checked against :data:`~workers.output_state.TRANSITIONS`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from workers.backoff import Backoff
from workers.output_state import (
    TERMINAL_STATES,
    TRANSITIONS,
    IllegalTransition,
    OutputEvent,
    OutputMachine,
    OutputState,
    OutputStatus,
)
from workers.process import FFmpegProcess, ProcessError, summarize_stderr

__all__ = [
    "TRANSITIONS",
    "IllegalTransition",
    "OutputEvent",
    "OutputState",
    "OutputStatus",
    "PermanentOutputError",
    "Run",
    "RunContext",
    "RunEnd",
    "Supervisor",
]

log = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 300


class PermanentOutputError(Exception):
    """Raised by ``run`` for a condition retrying cannot fix (e.g. a rejected target URL): the
    output goes to ``failed`` at once. The message becomes ``last_error``."""


class RunEnd(enum.Enum):
    """How a ``run`` that returned (rather than raised) ended, when it is not a failure."""

    INPUT_ENDED = "input ended"
    """The publish ended and the output delivered all it was given: the output is finished.
    (A run that returns ``None`` without being stopped is treated as a failed attempt.)"""


class RunContext:
    """What the supervisor hands one attempt of ``run``."""

    def __init__(self, supervisor: Supervisor, attempt: int, stopping: asyncio.Event) -> None:
        self._supervisor = supervisor
        self.attempt = attempt
        """1 for the first attempt, then 2, 3, ..."""
        self.stopping = stopping
        """Set when the supervisor is stopping: end gracefully (close ffmpeg's stdin) and return."""
        self.process: FFmpegProcess | None = None
        """The attached process, if any."""
        self.last_progress_at = supervisor.clock()
        """Clock time of the last :meth:`progress` (or the attempt's start)."""

    def progress(self) -> None:
        """Report progress: the output is live and its stall timer restarts."""
        self.last_progress_at = self._supervisor.clock()
        self._supervisor._on_progress(self)

    def attach(self, process: FFmpegProcess) -> None:
        """Attach the attempt's process: its progress counts as :meth:`progress` and its stderr
        tail is shown in the status and in ``last_error``."""
        self.process = process
        process.add_progress_listener(lambda _block: self.progress())


Run = Callable[[RunContext], Awaitable[RunEnd | None]]
_Failure = tuple[str, bool]
"""Why an attempt failed, and whether for good."""


class Supervisor:
    """Runs one output, restarting it with backoff until it finishes, fails or is stopped."""

    def __init__(
        self,
        name: str,
        run: Run,
        *,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        backoff_factor: float = 2.0,
        jitter: float = 0.2,
        stall_seconds: float = 15.0,
        reset_after: float = 30.0,
        stop_timeout: float = 10.0,
        max_retries: int | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        redact: Callable[[str], str] = lambda text: text,
        on_change: Callable[[OutputStatus], None] | None = None,
    ) -> None:
        """``clock`` (monotonic seconds) times stalls, the ``reset_after`` period and the
        warning rate; it must tick like the event loop's clock, which paces the waits.
        ``wall_clock`` only stamps ``since`` for people. ``stop_timeout`` bounds how long
        :meth:`stop` lets ``run`` end on its own before cancelling it; ``reset_after`` is how
        long an attempt must stay live for ``retries`` to start over."""
        self.name = name
        self.clock = clock
        """The supervisor's clock (see the constructor)."""
        self._run = run
        self._stall_seconds = stall_seconds
        self._stop_timeout = stop_timeout
        self._redact = redact
        self._on_change = on_change
        self._machine = OutputMachine(
            name,
            backoff=Backoff(backoff_initial, backoff_max, backoff_factor, jitter),
            reset_after=reset_after,
            max_retries=max_retries,
            rng=rng if rng is not None else random.Random(),
            wall_clock=wall_clock,
            entered=self._entered,
        )
        self._ctx: RunContext | None = None
        self._stopping = asyncio.Event()
        self._done = asyncio.Event()
        self._task: asyncio.Future[None] | None = None
        self._warnings = _WarningLimiter(clock)

    # -- public -------------------------------------------------------------------------------

    @property
    def state(self) -> OutputState:
        """The current state."""
        return self._machine.state

    @property
    def process(self) -> FFmpegProcess | None:
        """The process of the current attempt, if it started one."""
        return self._ctx.process if self._ctx is not None else None

    def status(self) -> OutputStatus:
        """A snapshot of the current status."""
        process = self.process
        return self._machine.status(process.stderr_tail() if process is not None else ())

    def start(self) -> None:
        """Start supervising in a background task (from a running event loop)."""
        if self._task is not None or self._machine.state is not OutputState.IDLE:
            raise RuntimeError(f"supervisor {self.name} already started or stopped")
        self._task = asyncio.create_task(self._main(), name=f"supervisor:{self.name}")

    async def wait_done(self) -> OutputStatus:
        """Wait until the output is ``finished``, ``failed`` or ``stopped``; its status then."""
        await self._done.wait()
        return self.status()

    async def stop(self) -> OutputStatus:
        """Stop for good and return the final status (a terminal state is kept as it is).

        A backoff wait ends at once. A running attempt sees ``ctx.stopping`` set and gets
        ``stop_timeout`` seconds to end gracefully (close ffmpeg's stdin so it writes
        ``EXT-X-ENDLIST``), then it is cancelled (its ``finally`` must stop the process).
        Raises :class:`IllegalTransition` if the supervisor hit one (a bug).
        """
        self._stopping.set()
        if self._task is None:
            self._machine.stop_requested()
        else:
            await asyncio.shield(self._task)
        return self.status()

    # -- the loop -----------------------------------------------------------------------------

    async def _main(self) -> None:
        try:
            await self._supervise()
        except asyncio.CancelledError:
            self._machine.stop_requested()
            raise
        except Exception as exc:  # a bug in the supervisor itself: make it visible, give up
            log.exception("supervisor %s crashed", self.name)
            self._machine.crashed(self._short(f"internal error: {exc!r}"))
            if isinstance(exc, IllegalTransition):
                raise

    async def _supervise(self) -> None:
        while not self._stopping.is_set():
            outcome = await self._attempt()
            if outcome is None:  # stopping
                break
            if outcome is RunEnd.INPUT_ENDED:
                self._machine.input_ended()
                return
            reason, permanent = outcome
            delay = self._machine.attempt_failed(
                self._short(reason), permanent=permanent, now=self.clock(), stderr_tail=self._tail()
            )
            if delay is None:  # gave up
                return
            if await self._sleep_unless_stopping(delay):
                break
        self._machine.stop_requested()

    async def _attempt(self) -> _Failure | RunEnd | None:
        """Run one attempt; return why it failed, :attr:`RunEnd.INPUT_ENDED`, or ``None`` when
        stopping."""
        ctx = RunContext(self, self._machine.attempts + 1, self._stopping)
        self._ctx = ctx
        self._machine.attempt_started()
        task = asyncio.ensure_future(self._run(ctx))
        try:
            stalled = await self._watch(ctx, task)
        finally:
            if not task.done():
                task.cancel()
            await asyncio.wait({task})
        error = None if task.cancelled() else task.exception()  # (marks it retrieved)
        if self._stopping.is_set():
            if error is not None:
                log.debug(
                    "output %s run ended with %s while stopping",
                    self.name,
                    self._redact(repr(error)),
                )
            return None
        if not stalled and not task.cancelled() and error is None:
            if task.result() is RunEnd.INPUT_ENDED:
                return RunEnd.INPUT_ENDED
        return self._classify(ctx, task, stalled)

    async def _watch(self, ctx: RunContext, task: asyncio.Future[Any]) -> bool:
        """Wait for ``task`` to end, a stall (return True) or a stop request."""
        stop_wait: asyncio.Future[Any] = asyncio.ensure_future(self._stopping.wait())
        try:
            while not task.done():
                if self._stopping.is_set():
                    done, _ = await asyncio.wait({task}, timeout=self._stop_timeout)
                    if not done:
                        log.warning(
                            "output %s did not end %.1f s after stop; cancelling",
                            self.name,
                            self._stop_timeout,
                        )
                    return False
                remaining = ctx.last_progress_at + self._stall_seconds - self.clock()
                if remaining <= 0:
                    return True
                await asyncio.wait(
                    [task, stop_wait], timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
            return False
        finally:
            stop_wait.cancel()

    def _classify(self, ctx: RunContext, task: asyncio.Future[Any], stalled: bool) -> _Failure:
        tail = ctx.process.stderr_tail() if ctx.process is not None else []
        if stalled:
            reason = f"no progress for {self._stall_seconds:g} s"
            summary = summarize_stderr(tail)
            return (f"{reason}: {summary}" if summary else reason), False
        if task.cancelled():
            return "run was cancelled", False
        exc = task.exception()
        if isinstance(exc, PermanentOutputError):
            return str(exc) or "permanent error", True
        if exc is not None:
            if not isinstance(exc, OSError | ProcessError):  # probably a bug in run: say where
                trace = self._redact("".join(traceback.format_exception(exc)))
                if self._warnings.allow(trace):
                    log.error("output %s: run raised\n%s", self.name, trace)
            return str(exc) or type(exc).__name__, False
        if ctx.process is not None and ctx.process.returncode is not None:
            return f"run ended ({ctx.process.exit_error()})", False
        return "run ended", False

    async def _sleep_unless_stopping(self, delay: float) -> bool:
        """Sleep ``delay`` seconds; return True at once if stop is requested meanwhile."""
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
        except TimeoutError:
            return False
        return True

    # -- state --------------------------------------------------------------------------------

    def _tail(self) -> tuple[str, ...]:
        process = self.process
        return tuple(process.stderr_tail()) if process is not None else ()

    def _on_progress(self, ctx: RunContext) -> None:
        if ctx is self._ctx:
            self._machine.progressed(self.clock())

    def _entered(self, new: OutputState) -> None:
        """Told by the machine after every transition: log it, report it."""
        self._log_transition(new)
        if new in TERMINAL_STATES:
            self._done.set()
        if self._on_change is not None:
            try:
                self._on_change(self.status())
            except Exception:
                log.exception("output %s: on_change callback failed", self.name)

    def _log_transition(self, new: OutputState) -> None:
        machine = self._machine
        if new is OutputState.RETRYING:
            message = f"output {self.name} failed: {machine.last_error}"
            level = logging.WARNING if self._warnings.allow(message) else logging.DEBUG
            log.log(level, "%s; retry %d in %.2f s", message, machine.retries, machine.delay)
        elif new is OutputState.FAILED:
            log.warning("output %s gave up: %s", self.name, machine.last_error)
        elif new is OutputState.CONNECTING and machine.retries:
            log.debug("output %s connecting (attempt %d)", self.name, machine.attempts)
        else:
            log.info("output %s %s", self.name, new)

    def _short(self, text: str) -> str:
        text = " ".join(self._redact(text).split())
        return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


class _WarningLimiter:
    """Lets an identical warning through once per ``interval`` seconds."""

    def __init__(self, clock: Callable[[], float], interval: float = 60.0) -> None:
        self._clock = clock
        self._interval = interval
        self._last: dict[str, float] = {}

    def allow(self, message: str) -> bool:
        now = self._clock()
        last = self._last.get(message)
        if last is not None and now - last < self._interval:
            return False
        if len(self._last) > 64:
            self._last.clear()
        self._last[message] = now
        return True
