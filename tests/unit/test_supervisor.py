"""The output supervision state machine, with real child processes where a process is involved."""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from pathlib import Path

import pytest

from tests.fakes import FakeClock
from tests.polling import eventually
from workers.argv import make_redactor
from workers.backoff import backoff_delay
from workers.feed import FeedEnd, run_process
from workers.output_state import (
    IllegalTransition,
    OutputEvent,
    OutputState,
    OutputStatus,
)
from workers.process import FFmpegProcess
from workers.supervisor import PermanentOutputError, RunContext, RunEnd, Supervisor

FIXTURES = Path(__file__).parent / "fixtures"
S = OutputState
E = OutputEvent


def child(script: str, *args: str) -> list[str]:
    return [sys.executable, str(FIXTURES / script), *args]


class Recorder:
    """An ``on_change`` callback keeping every status it was given."""

    def __init__(self) -> None:
        self.statuses: list[OutputStatus] = []

    def __call__(self, status: OutputStatus) -> None:
        self.statuses.append(status)

    @property
    def states(self) -> list[OutputState]:
        return [s.state for s in self.statuses]


# -- finished ----------------------------------------------------------------------------------


async def test_a_run_whose_input_ended_finishes_the_output_without_a_stop() -> None:
    clock, wall = FakeClock(), FakeClock(1_700_000_000.0)
    recorder = Recorder()
    calls = 0

    async def run(ctx: RunContext) -> RunEnd:
        nonlocal calls
        calls += 1
        ctx.progress()
        wall.advance(5)
        return RunEnd.INPUT_ENDED

    sup = Supervisor("hls:9", run, clock=clock, wall_clock=wall, on_change=recorder)
    sup.start()
    status = await asyncio.wait_for(sup.wait_done(), 10)
    assert status.state is S.FINISHED and status.since == 1_700_000_005.0
    assert recorder.states == [S.CONNECTING, S.LIVE, S.FINISHED]
    assert (status.retries, status.restarts, status.last_error) == (0, 0, None)
    assert (await sup.stop()).state is S.FINISHED  # finished is terminal: stop keeps it
    assert calls == 1


async def test_a_process_whose_feed_ended_finishes_after_an_eof_stop() -> None:
    processes: list[FFmpegProcess] = []

    async def feed(process: FFmpegProcess) -> FeedEnd:
        await process.write(b"the last bytes")
        return FeedEnd.INPUT_ENDED

    async def run(ctx: RunContext) -> RunEnd | None:
        proc = FFmpegProcess(child("progress.py", "advance", "0.05"), name="prog")
        processes.append(proc)
        end = await run_process(ctx, proc, feed, grace=3)
        return RunEnd.INPUT_ENDED if end is FeedEnd.INPUT_ENDED else None

    sup = Supervisor("hls:8", run)
    sup.start()
    assert (await asyncio.wait_for(sup.wait_done(), 10)).state is S.FINISHED
    assert processes[0].returncode == 0  # ended by EOF, not by a signal


async def test_an_illegal_transition_in_the_loop_is_raised_by_stop() -> None:
    async def run(ctx: RunContext) -> None:
        sup._machine.state = S.STOPPED  # a bug: the state changed outside the table
        return None

    sup = Supervisor("x", run, backoff_initial=0.001)
    sup.start()
    assert sup._task is not None
    await asyncio.wait({sup._task}, timeout=10)
    with pytest.raises(IllegalTransition, match="illegal transition from stopped on attempt fai"):
        await sup.stop()


async def _never_called(ctx: RunContext) -> None:
    raise AssertionError("run must not be called")


# -- failure and retry ----------------------------------------------------------------------


async def test_immediate_failures_retry_with_growing_capped_backoff() -> None:
    recorder = Recorder()
    calls = 0

    async def run(ctx: RunContext) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError("Connection refused")

    sup = Supervisor(
        "restream:1",
        run,
        backoff_initial=0.01,
        backoff_max=0.04,
        backoff_factor=2,
        jitter=0,
        on_change=recorder,
    )
    sup.start()
    await eventually(lambda: sup.status().retries >= 5)
    status = await sup.stop()
    assert status.state is S.STOPPED
    retrying = [s for s in recorder.statuses if s.state is S.RETRYING]
    assert [s.retry_delay for s in retrying[:5]] == [0.01, 0.02, 0.04, 0.04, 0.04]
    assert [s.retries for s in retrying[:5]] == [1, 2, 3, 4, 5]
    assert retrying[0].last_error == "Connection refused"
    assert recorder.states[:4] == [S.CONNECTING, S.RETRYING, S.CONNECTING, S.RETRYING]
    assert recorder.states[-1] is S.STOPPED
    assert status.restarts == calls - 1
    assert S.LIVE not in recorder.states


async def test_jittered_delays_come_from_the_injected_rng() -> None:
    async def run(ctx: RunContext) -> None:
        raise RuntimeError("boom")

    recorder = Recorder()
    sup = Supervisor(
        "x", run, backoff_initial=0.01, jitter=0.5, rng=random.Random(3), on_change=recorder
    )
    sup.start()
    await eventually(lambda: sup.status().retries >= 3)
    await sup.stop()
    rng = random.Random(3)
    expected = [
        backoff_delay(n, initial=0.01, maximum=30, factor=2, jitter=0.5, rng=rng) for n in (1, 2, 3)
    ]
    got = [s.retry_delay for s in recorder.statuses if s.state is S.RETRYING][:3]
    assert got == expected


async def test_permanent_error_goes_to_failed_without_retry() -> None:
    recorder = Recorder()
    calls = 0

    async def run(ctx: RunContext) -> None:
        nonlocal calls
        calls += 1
        raise PermanentOutputError("target rejected the stream key")

    sup = Supervisor("restream:2", run, backoff_initial=0.01, on_change=recorder)
    sup.start()
    await asyncio.wait_for(sup.wait_done(), 10)
    assert calls == 1
    assert recorder.states == [S.CONNECTING, S.FAILED]
    status = await sup.stop()  # failed is terminal: stop keeps it
    assert status.state is S.FAILED
    assert status.last_error == "target rejected the stream key"
    assert status.retries == 1 and status.restarts == 0


async def test_max_retries_gives_up() -> None:
    async def run(ctx: RunContext) -> None:
        raise RuntimeError("nope")

    sup = Supervisor("x", run, backoff_initial=0.001, max_retries=2)
    sup.start()
    await eventually(lambda: sup.state is S.FAILED)
    assert sup.status().retries == 3
    assert sup.status().restarts == 2


async def test_a_run_returning_on_its_own_is_restarted() -> None:
    async def run(ctx: RunContext) -> None:
        return None

    sup = Supervisor("x", run, backoff_initial=0.001)
    sup.start()
    await eventually(lambda: sup.status().restarts >= 2)
    status = await sup.stop()
    assert status.last_error == "run ended"


async def test_retries_reset_after_a_healthy_run() -> None:
    clock = FakeClock()

    async def run(ctx: RunContext) -> None:
        ctx.progress()
        clock.advance(0.02)  # each run stays live past reset_after, on the supervisor's clock
        raise RuntimeError("dropped")

    recorder = Recorder()
    sup = Supervisor(
        "x", run, backoff_initial=0.001, reset_after=0.01, on_change=recorder, clock=clock
    )
    sup.start()
    await eventually(lambda: sup.status().restarts >= 3)
    await sup.stop()
    assert {s.retries for s in recorder.statuses if s.state is S.RETRYING} == {1}
    assert recorder.states[:3] == [S.CONNECTING, S.LIVE, S.RETRYING]


# -- stop -------------------------------------------------------------------------------------


async def test_stop_during_backoff_is_prompt() -> None:
    async def run(ctx: RunContext) -> None:
        raise RuntimeError("down")

    sup = Supervisor("x", run, backoff_initial=60, backoff_max=60)
    sup.start()
    await eventually(lambda: sup.state is S.RETRYING)
    status = await asyncio.wait_for(sup.stop(), 10)  # not after the 60 s backoff
    assert status.state is S.STOPPED
    assert status.last_error == "down"


async def test_stop_before_start_and_twice() -> None:
    sup = Supervisor("x", _never_called)
    assert (await sup.stop()).state is S.STOPPED
    assert (await sup.stop()).state is S.STOPPED
    with pytest.raises(RuntimeError, match="already started or stopped"):
        sup.start()


async def test_stop_signals_the_run_which_ends_gracefully() -> None:
    ended_gracefully = asyncio.Event()

    async def run(ctx: RunContext) -> None:
        ctx.progress()
        await ctx.stopping.wait()
        ended_gracefully.set()

    sup = Supervisor("x", run)
    sup.start()
    await eventually(lambda: sup.state is S.LIVE)
    assert (await sup.stop()).state is S.STOPPED
    assert ended_gracefully.is_set()


async def test_stop_cancels_a_run_that_ignores_stopping(caplog: pytest.LogCaptureFixture) -> None:
    cancelled = asyncio.Event()

    async def run(ctx: RunContext) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    sup = Supervisor("x", run, stop_timeout=0.1)
    sup.start()
    await eventually(lambda: sup.state is S.CONNECTING)
    assert (await asyncio.wait_for(sup.stop(), 10)).state is S.STOPPED  # not after 60 s
    assert cancelled.is_set()
    assert "did not end 0.1 s after stop; cancelling" in caplog.text


# -- with real child processes ----------------------------------------------------------------


async def test_progress_makes_the_output_live_and_stop_ends_it_with_eof() -> None:
    recorder = Recorder()
    processes: list[FFmpegProcess] = []

    async def run(ctx: RunContext) -> None:
        proc = FFmpegProcess(child("progress.py", "advance", "0.05"), name="prog")
        processes.append(proc)
        await run_process(ctx, proc, grace=3)

    sup = Supervisor("hls:1", run, stall_seconds=5, on_change=recorder)
    sup.start()
    await eventually(lambda: sup.state is S.LIVE)
    status = await sup.stop()
    assert status.state is S.STOPPED
    assert recorder.states == [S.CONNECTING, S.LIVE, S.STOPPED]
    assert processes[0].returncode == 0  # ended by EOF, not by a signal


async def test_stalled_child_is_killed_and_restarted() -> None:
    recorder = Recorder()
    processes: list[FFmpegProcess] = []

    async def run(ctx: RunContext) -> None:
        proc = FFmpegProcess(child("hang.py"), name="stuck")
        processes.append(proc)
        await run_process(ctx, proc, grace=0.1, term_grace=1)

    sup = Supervisor(
        "hls:2", run, stall_seconds=0.3, backoff_initial=0.01, jitter=0, on_change=recorder
    )
    sup.start()
    await eventually(lambda: len(processes) >= 2)
    first = processes[0]
    assert first.returncode is not None  # stopped (via the ladder) before the restart
    status = sup.status()
    assert status.restarts >= 1
    assert status.last_error is not None
    assert status.last_error.startswith("no progress for 0.3 s")
    assert recorder.states[:3] == [S.CONNECTING, S.RETRYING, S.CONNECTING]
    await sup.stop()
    assert all(p.returncode is not None for p in processes)


async def test_process_exit_is_reported_and_redacted() -> None:
    redactor = make_redactor(["SECRETKEY", "hunter2"])

    async def run(ctx: RunContext) -> None:
        proc = FFmpegProcess(child("exit_early.py"), name="restream:3", redact=redactor)
        await run_process(ctx, proc)

    recorder = Recorder()
    sup = Supervisor("restream:3", run, backoff_initial=30, redact=redactor, on_change=recorder)
    sup.start()
    await eventually(lambda: sup.state is S.RETRYING)
    status = sup.status()
    assert (
        status.last_error
        == "exited with code 3: Error opening output rtmp://***@192.0.2.1/app/***: refused"
    )
    assert status.stderr_tail[-1] == "Conversion failed!"
    for snapshot in [status, *recorder.statuses]:
        assert "SECRETKEY" not in repr(snapshot)
        assert "hunter2" not in repr(snapshot)
    await sup.stop()


async def test_exception_messages_are_redacted_and_warnings_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def run(ctx: RunContext) -> None:
        raise OSError("cannot reach rtmp://host/app/SECRETKEY")

    caplog.set_level(logging.DEBUG, logger="workers.supervisor")
    sup = Supervisor("x", run, backoff_initial=0.001, redact=make_redactor(["SECRETKEY"]))
    sup.start()
    await eventually(lambda: sup.status().retries >= 5)
    await sup.stop()
    assert sup.status().last_error == "cannot reach rtmp://host/app/***"
    assert "SECRETKEY" not in caplog.text
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # the same failure again is logged at DEBUG


async def test_an_error_while_stopping_is_logged_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def run(ctx: RunContext) -> None:
        ctx.progress()
        await ctx.stopping.wait()
        raise OSError("lost rtmp://host/app/SECRETKEY while closing")

    caplog.set_level(logging.DEBUG, logger="workers.supervisor")
    sup = Supervisor("x", run, redact=make_redactor(["SECRETKEY"]))
    sup.start()
    await eventually(lambda: sup.state is OutputState.LIVE)
    await sup.stop()
    assert "while stopping" in caplog.text  # the path under test was taken
    assert "SECRETKEY" not in caplog.text
