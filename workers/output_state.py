"""The life of one supervised output as a pure state machine: its states, the events that move
it, the one table that says which event moves which state where, and the counters the API shows.

No I/O and no clock of its own: :class:`OutputMachine` is told what happened, and when (``now``,
on the supervisor's clock), the way aioquic's connection is; :class:`workers.supervisor.Supervisor`
is the asyncio adapter that runs the attempts and tells it. Every state change goes through
:meth:`OutputMachine._apply`, which looks the event up in :data:`TRANSITIONS`; an event the
current state's row does not list is a bug and raises :class:`IllegalTransition`.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from workers.backoff import Backoff


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
    FINISHED = "finished"
    """The input ended and the output delivered all it was given (terminal)."""


class OutputEvent(enum.StrEnum):
    """What can happen to an output: the keys of a row of :data:`TRANSITIONS`."""

    ATTEMPT_STARTED = "attempt started"
    """An attempt (one call of ``run``) began."""
    PROGRESSED = "progressed"
    """The running attempt reported its first progress."""
    ATTEMPT_FAILED = "attempt failed"
    """The attempt ended, raised or stalled; another follows after the backoff."""
    GAVE_UP = "gave up"
    """The attempt failed for good: a permanent error, or ``max_retries`` exceeded."""
    INPUT_ENDED = "input ended"
    """The publish ended and the attempt delivered everything it was given."""
    STOP_REQUESTED = "stop requested"
    """Someone stopped the output."""
    CRASHED = "crashed"
    """The supervisor itself failed (a bug in it): it gives up where it stands."""


_S, _E = OutputState, OutputEvent
TRANSITIONS: Mapping[OutputState, Mapping[OutputEvent, OutputState]] = MappingProxyType(
    {
        _S.IDLE: MappingProxyType(
            {
                _E.ATTEMPT_STARTED: _S.CONNECTING,
                _E.STOP_REQUESTED: _S.STOPPED,
                _E.CRASHED: _S.FAILED,
            }
        ),
        _S.CONNECTING: MappingProxyType(
            {
                _E.PROGRESSED: _S.LIVE,
                _E.ATTEMPT_FAILED: _S.RETRYING,
                _E.GAVE_UP: _S.FAILED,
                _E.INPUT_ENDED: _S.FINISHED,
                _E.STOP_REQUESTED: _S.STOPPED,
                _E.CRASHED: _S.FAILED,
            }
        ),
        _S.LIVE: MappingProxyType(
            {
                _E.ATTEMPT_FAILED: _S.RETRYING,
                _E.GAVE_UP: _S.FAILED,
                _E.INPUT_ENDED: _S.FINISHED,
                _E.STOP_REQUESTED: _S.STOPPED,
                _E.CRASHED: _S.FAILED,
            }
        ),
        _S.RETRYING: MappingProxyType(
            {
                _E.ATTEMPT_STARTED: _S.CONNECTING,
                _E.STOP_REQUESTED: _S.STOPPED,
                _E.CRASHED: _S.FAILED,
            }
        ),
        _S.FAILED: MappingProxyType({}),
        _S.STOPPED: MappingProxyType({}),
        _S.FINISHED: MappingProxyType({}),
    }
)
"""``TRANSITIONS[state][event]`` is the state ``event`` moves ``state`` to; an event missing from
the row is illegal in that state. A state with an empty row is terminal."""

TERMINAL_STATES = frozenset(state for state, row in TRANSITIONS.items() if not row)
"""States nothing leaves: ``failed``, ``stopped`` and ``finished``."""


class IllegalTransition(RuntimeError):
    """An event :data:`TRANSITIONS` does not allow in the current state (a bug)."""


def next_state(name: str, state: OutputState, event: OutputEvent) -> OutputState:
    """The state ``event`` moves output ``name`` to from ``state``, by :data:`TRANSITIONS`."""
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        raise IllegalTransition(
            f"output {name}: illegal transition from {state} on {event}"
        ) from None


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


Entered = Callable[[OutputState], None]
"""Told each state the machine enters, right after it entered it."""


class OutputMachine:
    """The state and counters of one supervised output, changed only by the events below."""

    def __init__(
        self,
        name: str,
        *,
        backoff: Backoff,
        reset_after: float,
        max_retries: int | None,
        rng: random.Random,
        wall_clock: Callable[[], float],
        entered: Entered | None = None,
    ) -> None:
        """``reset_after``: seconds an attempt must stay live for ``retries`` to start over;
        ``wall_clock`` stamps ``since`` (Unix seconds, for people); ``entered`` is told every
        state entered."""
        self.name = name
        self._backoff = backoff
        self._reset_after = reset_after
        self._max_retries = max_retries
        self._rng = rng
        self._wall_clock = wall_clock
        self._entered = entered
        self.state = OutputState.IDLE
        """The current state (change it only through the event methods)."""
        self.since = wall_clock()
        """Wall-clock time the current state was entered."""
        self.attempts = 0
        """Attempts started so far."""
        self.retries = 0
        """Consecutive failed attempts."""
        self.last_error: str | None = None
        """Why the last attempt failed (as given to :meth:`attempt_failed`)."""
        self.delay = 0.0
        """The backoff of the last failure, in seconds."""
        self.failure_tail: tuple[str, ...] = ()
        """The stderr tail of the last failed attempt."""
        self._live_since: float | None = None

    @property
    def restarts(self) -> int:
        """Attempts started after the first one."""
        return max(self.attempts - 1, 0)

    @property
    def terminal(self) -> bool:
        """Whether the output reached a state nothing leaves."""
        return self.state in TERMINAL_STATES

    # -- events ---------------------------------------------------------------------------------

    def attempt_started(self) -> None:
        """A new attempt began (from ``idle`` or after the backoff)."""
        self.attempts += 1
        self._live_since = None
        self._apply(OutputEvent.ATTEMPT_STARTED)

    def progressed(self, now: float) -> None:
        """The running attempt reported progress; the first time, the output is live."""
        if self.state is OutputState.CONNECTING:
            self._live_since = now
            self._apply(OutputEvent.PROGRESSED)

    def attempt_failed(
        self, reason: str, *, permanent: bool, now: float, stderr_tail: Sequence[str] = ()
    ) -> float | None:
        """The running attempt failed for ``reason``: returns the backoff to wait before the
        next one (``retrying``), or ``None`` when the output gave up (``failed``)."""
        self.failure_tail = tuple(stderr_tail)
        if self._live_since is not None and now - self._live_since >= self._reset_after:
            self.retries = 0
        self.retries += 1
        self.last_error = reason
        if permanent or (self._max_retries is not None and self.retries > self._max_retries):
            self._apply(OutputEvent.GAVE_UP)
            return None
        self.delay = self._backoff.delay(self.retries, self._rng)
        self._apply(OutputEvent.ATTEMPT_FAILED)
        return self.delay

    def input_ended(self) -> None:
        """The publish ended and the attempt delivered all it was given."""
        self._apply(OutputEvent.INPUT_ENDED)

    def stop_requested(self) -> None:
        """Stopped on request; a terminal state is kept as it is."""
        if not self.terminal:
            self._apply(OutputEvent.STOP_REQUESTED)

    def crashed(self, reason: str) -> None:
        """The supervisor failed: keep ``reason`` as the error and give up (a terminal state is
        kept as it is)."""
        self.last_error = reason
        if not self.terminal:
            self._apply(OutputEvent.CRASHED)

    # -- reading ----------------------------------------------------------------------------------

    def status(self, stderr_tail: Sequence[str] = ()) -> OutputStatus:
        """A snapshot, with the running process's ``stderr_tail`` (or, unless live and while
        that is empty, the tail of the last failed attempt)."""
        tail = tuple(stderr_tail)
        if not tail and self.state is not OutputState.LIVE:
            tail = self.failure_tail
        return OutputStatus(
            self.name,
            self.state,
            self.since,
            self.retries,
            self.restarts,
            self.last_error,
            tail,
            self.delay if self.state is OutputState.RETRYING else None,
        )

    # -- the one place the state changes --------------------------------------------------------

    def _apply(self, event: OutputEvent) -> None:
        self.state = next_state(self.name, self.state, event)
        self.since = self._wall_clock()
        if self._entered is not None:
            self._entered(self.state)
