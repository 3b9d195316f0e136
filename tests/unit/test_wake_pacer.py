"""The wake pacer: requests woken together go on at most one batch per turn of the loop."""

from __future__ import annotations

import asyncio

import pytest

from api.live.wake_pacer import WakePacer


async def _turns_until_done(tasks: list[asyncio.Task[None]], done: list[int]) -> list[int]:
    """How many waiters went on in each turn of the loop, until every task finished."""
    per_turn = []
    for _ in range(100):  # a bound: 40 waiters need a few turns
        if all(task.done() for task in tasks):
            break
        before = len(done)
        await asyncio.sleep(0)  # one turn of the event loop
        per_turn.append(len(done) - before)
    return per_turn


async def test_waiters_go_on_at_most_one_batch_per_turn_and_all_of_them_do() -> None:
    pacer = WakePacer(batch=16)
    done: list[int] = []

    async def waiter(number: int) -> None:
        await pacer.turn()
        done.append(number)

    tasks = [asyncio.create_task(waiter(n)) for n in range(40)]
    per_turn = await _turns_until_done(tasks, done)
    assert sorted(done) == list(range(40))
    assert done == list(range(40))  # in the order they came
    assert max(per_turn) == 16
    assert [n for n in per_turn if n] == [16, 16, 8]


async def test_a_cancelled_waiter_takes_no_place_in_a_batch() -> None:
    pacer = WakePacer(batch=2)
    done: list[int] = []

    async def waiter(number: int) -> None:
        await pacer.turn()
        done.append(number)

    tasks = [asyncio.create_task(waiter(n)) for n in range(3)]
    await asyncio.sleep(0)  # all three wait for their turn
    tasks[0].cancel()
    per_turn = await _turns_until_done(tasks, done)
    assert done == [1, 2]
    assert [n for n in per_turn if n] == [2]


def test_a_batch_is_at_least_one() -> None:
    with pytest.raises(ValueError):
        WakePacer(batch=0)
