"""Waking in batches: the waiters of one change go on at most one batch per turn of the loop."""

from __future__ import annotations

import asyncio

import pytest

from workers.wake_batches import WakeBatches


async def _turns_until_done(tasks: list[asyncio.Task[None]], done: list[int]) -> list[int]:
    """How many waiters went on in each turn of the event loop, until every task finished."""
    per_turn = []
    for _ in range(100):  # a bound: 40 waiters need a few turns
        if all(task.done() for task in tasks):
            break
        before = len(done)
        await asyncio.sleep(0)  # one turn of the event loop
        per_turn.append(len(done) - before)
    return per_turn


async def _waiters(wakes: WakeBatches, count: int, done: list[int]) -> list[asyncio.Task[None]]:
    async def waiter(number: int) -> None:
        await wakes.waiter()
        done.append(number)

    tasks = [asyncio.create_task(waiter(n)) for n in range(count)]
    await asyncio.sleep(0)  # all of them wait
    return tasks


async def test_waiters_go_on_at_most_one_batch_per_turn_and_all_of_them_do() -> None:
    wakes = WakeBatches(batch=16)
    done: list[int] = []
    tasks = await _waiters(wakes, 40, done)
    assert done == []
    wakes.wake()
    per_turn = await _turns_until_done(tasks, done)
    assert done == list(range(40))  # all, in the order they came
    assert max(per_turn) == 16
    assert [n for n in per_turn if n] == [16, 16, 8]


async def test_a_cancelled_waiter_takes_no_place_in_a_batch() -> None:
    wakes = WakeBatches(batch=2)
    done: list[int] = []
    tasks = await _waiters(wakes, 3, done)
    tasks[0].cancel()
    wakes.wake()
    per_turn = await _turns_until_done(tasks, done)
    assert done == [1, 2]
    assert [n for n in per_turn if n] == [2]


async def test_a_waiter_that_comes_after_a_change_waits_for_the_next_one() -> None:
    wakes = WakeBatches(batch=1)
    done: list[int] = []
    first = await _waiters(wakes, 2, done)
    wakes.wake()
    late = wakes.waiter()  # came while the first change's waiters are being woken
    await _turns_until_done(first, done)
    assert done == [0, 1]
    assert not late.done()
    wakes.wake()
    await asyncio.wait_for(late, 1)  # a bound, not a pause


def test_a_batch_is_at_least_one() -> None:
    with pytest.raises(ValueError):
        WakeBatches(batch=0)
