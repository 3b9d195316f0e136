"""The output state machine on its own (no I/O, a fake clock): the backoff, the transition
table every change of state goes through, the counters and the status it reports."""

from __future__ import annotations

import random

import pytest

from tests.fakes import FakeClock
from workers.backoff import Backoff, backoff_delay
from workers.output_state import (
    TERMINAL_STATES,
    TRANSITIONS,
    IllegalTransition,
    OutputEvent,
    OutputMachine,
    OutputState,
)

S = OutputState
E = OutputEvent

# -- backoff ----------------------------------------------------------------------------------


def test_backoff_is_capped_exponential_without_jitter() -> None:
    rng = random.Random(0)
    delays = [
        backoff_delay(n, initial=1, maximum=30, factor=2, jitter=0, rng=rng) for n in range(1, 9)
    ]
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff_delay(10_000, initial=1, maximum=30, factor=2, jitter=0, rng=rng) == 30


def test_backoff_jitter_stays_in_its_band_and_under_the_cap() -> None:
    rng = random.Random(42)
    for n in range(1, 12):
        base = min(30.0, 2.0 ** (n - 1))
        delay = backoff_delay(n, initial=1, maximum=30, factor=2, jitter=0.2, rng=rng)
        assert base * 0.8 <= delay <= min(30.0, base * 1.2)
    same = [backoff_delay(3, initial=1, maximum=30, factor=2, jitter=0.2, rng=random.Random(7))]
    again = [backoff_delay(3, initial=1, maximum=30, factor=2, jitter=0.2, rng=random.Random(7))]
    assert same == again  # an injected rng makes delays reproducible


# -- the transition table ---------------------------------------------------------------------

PATHS: dict[OutputState, list[OutputEvent]] = {
    S.IDLE: [],
    S.CONNECTING: [E.ATTEMPT_STARTED],
    S.LIVE: [E.ATTEMPT_STARTED, E.PROGRESSED],
    S.RETRYING: [E.ATTEMPT_STARTED, E.ATTEMPT_FAILED],
    S.FAILED: [E.ATTEMPT_STARTED, E.GAVE_UP],
    S.STOPPED: [E.STOP_REQUESTED],
    S.FINISHED: [E.ATTEMPT_STARTED, E.PROGRESSED, E.INPUT_ENDED],
}
"""A way from ``idle`` to each state."""


def machine(
    clock: FakeClock | None = None, *, max_retries: int | None = None, **backoff: float
) -> OutputMachine:
    return OutputMachine(
        "x",
        backoff=Backoff(**{"jitter": 0.0, **backoff}),
        reset_after=30.0,
        max_retries=max_retries,
        rng=random.Random(0),
        wall_clock=clock or FakeClock(),
    )


def drive(out: OutputMachine, event: OutputEvent, clock: FakeClock) -> None:
    """Send ``event`` through the machine's own event method."""
    if event is E.ATTEMPT_STARTED:
        out.attempt_started()
    elif event is E.PROGRESSED:
        out.progressed(clock())
    elif event in (E.ATTEMPT_FAILED, E.GAVE_UP):
        out.attempt_failed("down", permanent=event is E.GAVE_UP, now=clock())
    elif event is E.INPUT_ENDED:
        out.input_ended()
    elif event is E.STOP_REQUESTED:
        out.stop_requested()
    else:
        out.crashed("bug")


def machine_in(state: OutputState, clock: FakeClock) -> OutputMachine:
    out = machine(clock)
    for event in PATHS[state]:
        drive(out, event, clock)
    assert out.state is state
    return out


def test_the_table_has_a_row_per_state_and_three_terminal_states() -> None:
    assert set(TRANSITIONS) == set(OutputState)
    assert TERMINAL_STATES == {S.FAILED, S.STOPPED, S.FINISHED}
    for state in set(OutputState) - TERMINAL_STATES:
        assert TRANSITIONS[state][E.STOP_REQUESTED] is S.STOPPED
        assert TRANSITIONS[state][E.CRASHED] is S.FAILED
    assert S.LIVE not in TRANSITIONS[S.IDLE].values()
    finishing = {state for state, row in TRANSITIONS.items() if E.INPUT_ENDED in row}
    assert finishing == {S.CONNECTING, S.LIVE}  # only a running attempt sees its input end


@pytest.mark.parametrize("state", list(OutputState))
def test_every_event_moves_the_machine_as_the_table_says(state: OutputState) -> None:
    clock = FakeClock()
    for event in OutputEvent:
        out = machine_in(state, clock)
        clock.advance(1)
        before = out.since
        if event in TRANSITIONS[state]:
            drive(out, event, clock)
            assert out.state is TRANSITIONS[state][event], event
            assert out.since == clock() != before
        elif event in (E.STOP_REQUESTED, E.CRASHED) and state in TERMINAL_STATES:
            drive(out, event, clock)  # stopping or crashing when already done keeps the end
            assert (out.state, out.since) == (state, before)
        elif event is E.PROGRESSED:
            drive(out, event, clock)  # progress moves only a connecting output
            assert (out.state, out.since) == (state, before)
        else:
            with pytest.raises(IllegalTransition, match=f"from {state} on {event}"):
                drive(out, event, clock)


def test_an_illegal_transition_raises_and_names_the_output() -> None:
    with pytest.raises(IllegalTransition, match="output x: illegal transition from idle on"):
        machine().input_ended()


def test_backoff_grows_per_consecutive_failure_and_max_retries_gives_up() -> None:
    clock = FakeClock()
    out = machine(clock, max_retries=3, initial=1.0, maximum=3.0)
    delays = []
    for _ in range(4):
        out.attempt_started()
        delays.append(out.attempt_failed("refused", permanent=False, now=clock()))
    assert delays == [1.0, 2.0, 3.0, None]
    assert (out.state, out.retries, out.restarts, out.last_error) == (S.FAILED, 4, 3, "refused")


def test_retries_start_over_after_an_attempt_stayed_live_long_enough() -> None:
    clock = FakeClock()
    out = machine(clock)
    out.attempt_started()
    out.attempt_failed("down", permanent=False, now=clock())
    out.attempt_started()
    out.progressed(clock())
    clock.advance(29.9)
    out.attempt_failed("dropped", permanent=False, now=clock())
    assert out.retries == 2  # live for less than reset_after: still consecutive
    out.attempt_started()
    out.progressed(clock())
    clock.advance(30)
    out.attempt_failed("dropped", permanent=False, now=clock())
    assert out.retries == 1
    assert out.status().retry_delay == 1.0


def test_the_status_keeps_the_failed_attempts_stderr_until_the_new_one_speaks() -> None:
    clock = FakeClock()
    out = machine(clock)
    out.attempt_started()
    out.attempt_failed("exited", permanent=False, now=clock(), stderr_tail=["refused"])
    out.attempt_started()
    assert out.status().stderr_tail == ("refused",)
    assert out.status(["connecting..."]).stderr_tail == ("connecting...",)
    out.progressed(clock())
    assert out.status().stderr_tail == ()  # live: only the running process speaks
