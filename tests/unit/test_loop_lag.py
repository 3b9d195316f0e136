"""The event-loop lag probe: how late each timer ran, on a fake loop (no wall clock)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from api.metrics.loop_lag import LoopLagProbe
from config import Settings, SettingsError


class _Handle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """A loop whose time only moves when told; ``run_due`` runs what is due at ``at``."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[tuple[float, Callable[[], object], _Handle]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object]) -> _Handle:
        handle = _Handle()
        self.timers.append((when, callback, handle))
        return handle

    def run_due(self, at: float) -> None:
        """The loop gets to its timers at ``at`` (late if a turn ran long)."""
        self.now = at
        due = [t for t in self.timers if t[0] <= at + 1e-9 and not t[2].cancelled]
        self.timers = [t for t in self.timers if t not in due and not t[2].cancelled]
        for _, callback, _ in due:
            callback()


def test_each_probe_records_how_late_its_timer_ran() -> None:
    loop = FakeLoop()
    lags: list[float] = []
    probe = LoopLagProbe(loop, lags.append, interval=0.05)
    probe.start()
    loop.run_due(100.05)  # on time
    loop.run_due(100.13)  # due at 100.10: a turn ran 30 ms long
    loop.run_due(100.18)  # the next is due 50 ms after the late one ran
    assert lags == pytest.approx([0.0, 0.03, 0.0])
    assert [t[0] for t in loop.timers] == pytest.approx([100.23])


def test_a_timer_run_early_within_the_clock_resolution_is_no_lag() -> None:
    loop = FakeLoop()
    lags: list[float] = []
    probe = LoopLagProbe(loop, lags.append, interval=0.05)
    probe.start()
    loop.now = 100.0499  # asyncio runs timers due within its clock resolution
    loop.timers[0][1]()
    assert lags == [0.0]


def test_stop_cancels_the_pending_probe_and_start_again_keeps_one() -> None:
    loop = FakeLoop()
    lags: list[float] = []
    probe = LoopLagProbe(loop, lags.append, interval=0.05)
    probe.start()
    probe.start()
    assert len([t for t in loop.timers if not t[2].cancelled]) == 1
    probe.stop()
    loop.run_due(101.0)
    assert lags == []
    assert not loop.timers


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LoopLagProbe(FakeLoop(), lambda lag: None, interval=0)


def test_the_probe_period_is_a_setting_zero_turns_it_off_and_negative_is_refused() -> None:
    assert Settings().loop_lag_probe_seconds == 1.0
    assert Settings.from_env({"LIVERELAY_LOOP_LAG_PROBE_SECONDS": "0"}).loop_lag_probe_seconds == 0
    with pytest.raises(SettingsError):
        Settings.from_env({"LIVERELAY_LOOP_LAG_PROBE_SECONDS": "-1"})
