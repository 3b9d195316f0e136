"""The one supervision state machine every output (HLS, recording, restream) runs under.

A :class:`Supervisor` calls ``run(ctx)`` over and over: ``run`` starts ffmpeg, feeds it and
returns or raises when it ends. Liveness is "run ended OR no progress for ``stall_seconds``"; a
failed attempt is retried after a capped, jittered exponential backoff, forever unless
``max_retries`` is set or ``run`` raises :class:`PermanentOutputError`. States and their allowed
transitions are in :data:`TRANSITIONS`; anything else is a bug and raises.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from workers.process import FFmpegProcess, OutputProcessExited, ProcessError, summarize_stderr

log = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 300


class OutputState(enum.StrEnum):
    """Where an output is in its life."""

    IDLE = "idle"
    """Created, not started."""
    CONNECTING = "connecting"
    """An attempt is running but has reported no progress yet."""
    LIVE = "live"
    """The running attempt reported progress."""
    RETRYING = "retrying"
    """Waiting out the backoff after a failed attempt."""
    FAILED = "failed"
    """Gave up: a permanent error or ``max_retries`` exceeded (terminal)."""
    STOPPED = "stopped"
    """Stopped on request (terminal)."""


_S = OutputState
TRANSITIONS: MappingProxyType[OutputState, frozenset[OutputState]] = MappingProxyType(
    {
        _S.IDLE: frozenset({_S.CONNECTING, _S.STOPPED}),
        _S.CONNECTING: frozenset({_S.LIVE, _S.RETRYING, _S.FAILED, _S.STOPPED}),
        _S.LIVE: frozenset({_S.RETRYING, _S.FAILED, _S.STOPPED}),
        _S.RETRYING: frozenset({_S.CONNECTING, _S.FAILED, _S.STOPPED}),
        _S.FAILED: frozenset(),
        _S.STOPPED: frozenset(),
    }
)
"""Allowed transitions: ``TRANSITIONS[old]`` is the set of states ``old`` may move to."""


class IllegalTransition(RuntimeError):
    """A supervisor tried a transition :data:`TRANSITIONS` does not allow (a bug)."""


class PermanentOutputError(Exception):
    """Raised by ``run`` for a condition retrying cannot fix (e.g. a rejected target URL): the
    output goes to ``failed`` at once. The message becomes ``last_error``."""


@dataclass(frozen=True)
class OutputStatus:
    """A snapshot of one supervised output, for the API and logs."""

    name: str
    """The output's name, e.g. ``restream:3``."""
    state: OutputState
    """Current state."""
    since: float
    """Wall-clock time (Unix epoch seconds) the current state was entered."""
    retries: int
    """Consecutive failed attempts (reset after an attempt stayed live for ``reset_after``)."""
    restarts: int
    """Attempts started after the first one, in total."""
    last_error: str | None
    """Why the last attempt failed, short and redacted (e.g. ``exited with code 1: ...``)."""
    stderr_tail: tuple[str, ...]
    """The last stderr lines of the current process, or of the last failed one while the new
    one has said nothing yet; redacted."""
    retry_delay: float | None = None
    """While ``retrying``: the backoff being waited out, in seconds."""

    @property
    def since_iso(self) -> str:
        """``since`` as an ISO 8601 UTC timestamp."""
        return datetime.fromtimestamp(self.since, UTC).isoformat()


def backoff_delay(
    retries: int,
    *,
    initial: float,
    maximum: float,
    factor: float,
    jitter: float,
    rng: random.Random,
) -> float:
    """Seconds to wait before attempt ``retries + 1``: ``initial * factor**(retries - 1)`` capped
    at ``maximum``, times a uniform factor in ``[1 - jitter, 1 + jitter]``, never above
    ``maximum``."""
    exponent = min(max(retries - 1, 0), 64)  # 2.0**64 is already far past any cap
    base = min(maximum, initial * factor**exponent)
    return max(0.0, min(maximum, base * (1.0 + rng.uniform(-jitter, jitter))))


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
        self.last_progress_at = supervisor._clock()
        """Clock time of the last :meth:`progress` (or the attempt's start)."""

    def progress(self) -> None:
        """Report progress: the output is live and its stall timer restarts."""
        self.last_progress_at = self._supervisor._clock()
        self._supervisor._on_progress(self)

    def attach(self, process: FFmpegProcess) -> None:
        """Attach the attempt's process: its progress counts as :meth:`progress` and its stderr
        tail is shown in the status and in ``last_error``."""
        self.process = process
        process.add_progress_listener(lambda _block: self.progress())


Run = Callable[[RunContext], Awaitable[None]]
Feed = Callable[[FFmpegProcess], Awaitable[object]]
"""Writes media into the process until the input ends (then returns) or fails (raises)."""


async def run_process(
    ctx: RunContext,
    process: FFmpegProcess,
    feed: Feed | None = None,
    *,
    grace: float = 5.0,
    term_grace: float = 3.0,
) -> None:
    """The usual body of a ``run``: attach and start ``process``, run ``feed(process)`` (which
    writes media with ``process.write``) until the process exits, the feed ends or
    ``ctx.stopping`` is set, then stop the process with the ladder (EOF first).

    Returns normally only when stopping; raises :class:`OutputProcessExited` when the process
    ended on its own (even with code 0: a live output is not supposed to end), or whatever
    ``feed`` raised.
    """
    ctx.attach(process)
    await process.start()
    exited = asyncio.ensure_future(process.wait())
    stopping = asyncio.ensure_future(ctx.stopping.wait())
    feeding = asyncio.ensure_future(feed(process)) if feed is not None else None
    tasks: set[asyncio.Future[Any]] = {exited, stopping}
    if feeding is not None:
        tasks.add(feeding)
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await process.stop(grace=grace, term_grace=term_grace)
    if ctx.stopping.is_set():
        return
    if feeding is not None and feeding.done() and not feeding.cancelled():
        error = feeding.exception()
        if error is None:
            return  # the input ended; the process was stopped gracefully
        if not isinstance(error, OutputProcessExited):
            raise error
    raise process.exit_error()


class Supervisor:
    """Runs one output, restarting it with backoff until stopped (see the module docstring)."""

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
        """``clock`` must tick with the event loop's clock (it times stalls); ``stop_timeout``
        bounds how long :meth:`stop` lets ``run`` end on its own before cancelling it;
        ``reset_after`` is how long an attempt must stay live for ``retries`` to start over."""
        self.name = name
        self._run = run
        self._backoff = (backoff_initial, backoff_max, backoff_factor, jitter)
        self._stall_seconds = stall_seconds
        self._reset_after = reset_after
        self._stop_timeout = stop_timeout
        self._max_retries = max_retries
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._wall_clock = wall_clock
        self._redact = redact
        self._on_change = on_change
        self._state = OutputState.IDLE
        self._since = wall_clock()
        self._retries = 0
        self._restarts = 0
        self._attempts = 0
        self._last_error: str | None = None
        self._ctx: RunContext | None = None
        self._live_since: float | None = None
        self._delay = 0.0
        self._failure_tail: tuple[str, ...] = ()
        self._stopping = asyncio.Event()
        self._task: asyncio.Future[None] | None = None
        self._warnings = _WarningLimiter(clock)

    # -- public -------------------------------------------------------------------------------

    @property
    def state(self) -> OutputState:
        """The current state."""
        return self._state

    @property
    def process(self) -> FFmpegProcess | None:
        """The process of the current attempt, if it started one."""
        return self._ctx.process if self._ctx is not None else None

    def status(self) -> OutputStatus:
        """A snapshot of the current status."""
        process = self._ctx.process if self._ctx is not None else None
        tail = tuple(process.stderr_tail()) if process is not None else ()
        if not tail and self._state is not OutputState.LIVE:
            tail = self._failure_tail  # keep showing why the last attempt failed
        return OutputStatus(
            self.name,
            self._state,
            self._since,
            self._retries,
            self._restarts,
            self._last_error,
            tail,
            self._delay if self._state is OutputState.RETRYING else None,
        )

    def next_delay(self) -> float:
        """The backoff before the next attempt, given the current ``retries``."""
        initial, maximum, factor, jitter = self._backoff
        return backoff_delay(
            self._retries,
            initial=initial,
            maximum=maximum,
            factor=factor,
            jitter=jitter,
            rng=self._rng,
        )

    def start(self) -> None:
        """Start supervising in a background task (from a running event loop)."""
        if self._task is not None or self._state is not OutputState.IDLE:
            raise RuntimeError(f"supervisor {self.name} already started or stopped")
        self._task = asyncio.create_task(self._main(), name=f"supervisor:{self.name}")

    async def stop(self) -> OutputStatus:
        """Stop for good and return the final status.

        A backoff wait ends at once. A running attempt sees ``ctx.stopping`` set and gets
        ``stop_timeout`` seconds to end gracefully (close ffmpeg's stdin so it writes
        ``EXT-X-ENDLIST``), then it is cancelled (its ``finally`` must stop the process).
        """
        self._stopping.set()
        if self._task is None:
            if self._state is OutputState.IDLE:
                self._transition(OutputState.STOPPED)
        else:
            await asyncio.shield(self._task)
        return self.status()

    # -- the loop -----------------------------------------------------------------------------

    async def _main(self) -> None:
        try:
            while not self._stopping.is_set():
                failure = await self._attempt()
                if failure is None:  # stopping
                    break
                if not self._after_failure(*failure):
                    return
                if await self._sleep_unless_stopping(self._delay):
                    break
            self._transition(OutputState.STOPPED)
        except asyncio.CancelledError:
            self._force(OutputState.STOPPED)
            raise
        except Exception as exc:  # a bug in the supervisor itself: make it visible, stop
            log.exception("supervisor %s crashed", self.name)
            self._last_error = self._short(f"internal error: {exc!r}")
            self._force(OutputState.FAILED)

    async def _attempt(self) -> tuple[str, bool] | None:
        """Run one attempt; return ``(reason, permanent)`` or ``None`` when stopping."""
        self._attempts += 1
        if self._attempts > 1:
            self._restarts += 1
        ctx = RunContext(self, self._attempts, self._stopping)
        self._ctx = ctx
        self._live_since = None
        self._transition(OutputState.CONNECTING)
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
        return self._classify(ctx, task, stalled)

    async def _watch(self, ctx: RunContext, task: asyncio.Future[None]) -> bool:
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
                remaining = ctx.last_progress_at + self._stall_seconds - self._clock()
                if remaining <= 0:
                    return True
                await asyncio.wait(
                    [task, stop_wait], timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
            return False
        finally:
            stop_wait.cancel()

    def _classify(
        self, ctx: RunContext, task: asyncio.Future[None], stalled: bool
    ) -> tuple[str, bool]:
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

    def _after_failure(self, reason: str, permanent: bool) -> bool:
        """Record a failed attempt; enter ``retrying`` (True) or ``failed`` (False)."""
        process = self._ctx.process if self._ctx is not None else None
        self._failure_tail = tuple(process.stderr_tail()) if process is not None else ()
        if self._live_since is not None and self._clock() - self._live_since >= self._reset_after:
            self._retries = 0
        self._retries += 1
        self._last_error = self._short(reason)
        if permanent or (self._max_retries is not None and self._retries > self._max_retries):
            self._transition(OutputState.FAILED)
            return False
        self._delay = self.next_delay()
        self._transition(OutputState.RETRYING)
        return True

    async def _sleep_unless_stopping(self, delay: float) -> bool:
        """Sleep ``delay`` seconds; return True at once if stop is requested meanwhile."""
        try:
            await asyncio.wait_for(self._stopping.wait(), delay)
        except TimeoutError:
            return False
        return True

    # -- state --------------------------------------------------------------------------------

    def _on_progress(self, ctx: RunContext) -> None:
        if ctx is self._ctx and self._state is OutputState.CONNECTING:
            self._live_since = self._clock()
            self._transition(OutputState.LIVE)

    def _transition(self, new: OutputState) -> None:
        if new not in TRANSITIONS[self._state]:
            raise IllegalTransition(
                f"output {self.name}: illegal transition {self._state} -> {new}"
            )
        self._force(new)

    def _force(self, new: OutputState) -> None:
        if new is self._state:
            return
        self._state = new
        self._since = self._wall_clock()
        self._log_transition(new)
        if self._on_change is not None:
            try:
                self._on_change(self.status())
            except Exception:
                log.exception("output %s: on_change callback failed", self.name)

    def _log_transition(self, new: OutputState) -> None:
        if new is OutputState.RETRYING:
            message = f"output {self.name} failed: {self._last_error}"
            level = logging.WARNING if self._warnings.allow(message) else logging.DEBUG
            log.log(level, "%s; retry %d in %.2f s", message, self._retries, self._delay)
        elif new is OutputState.FAILED:
            log.warning("output %s gave up: %s", self.name, self._last_error)
        elif new is OutputState.CONNECTING and self._retries:
            log.debug("output %s connecting (attempt %d)", self.name, self._attempts)
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
