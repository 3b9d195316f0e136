"""The playback routes' budget per turn of the event loop: at most ``per_turn`` callers go on
per turn, the others in the order they came, one batch per turn, and a caller that gave up
takes no place. Turns are counted with ``asyncio.sleep(0)``, never timed."""

from __future__ import annotations

import asyncio

import pytest

from workers.turn_budget import TurnBudget


async def _caller(budget: TurnBudget, number: int, done: list[int]) -> None:
    wait = budget.admit()
    if wait is not None:
        await wait
    done.append(number)


async def _per_turn(tasks: list[asyncio.Task[None]], done: list[int]) -> list[int]:
    """How many callers went on in each turn, until all finished (the first turn is the one in
    which they all arrived)."""
    per_turn = []
    for _ in range(100):  # a bound: 40 callers need a few turns
        if all(task.done() for task in tasks):
            break
        before = len(done)
        await asyncio.sleep(0)  # one turn of the event loop
        per_turn.append(len(done) - before)
    return per_turn


async def test_callers_arriving_together_go_on_a_batch_per_turn_in_order() -> None:
    budget = TurnBudget(per_turn=16)
    done: list[int] = []
    tasks = [asyncio.create_task(_caller(budget, n, done)) for n in range(40)]
    per_turn = await _per_turn(tasks, done)
    assert done == list(range(40))
    assert max(per_turn) == 16
    assert [n for n in per_turn if n] == [16, 16, 8]


async def test_a_caller_alone_goes_on_at_once() -> None:
    budget = TurnBudget(per_turn=1)
    assert budget.admit() is None
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # a later turn: the budget is full again
    assert budget.admit() is None


async def test_released_waiters_use_up_the_budget_of_their_turn() -> None:
    budget = TurnBudget(per_turn=1)
    assert budget.admit() is None
    first = budget.admit()
    assert first is not None
    await asyncio.sleep(0)  # the next turn releases the first waiter: no place left
    second = budget.admit()
    assert first.done() and second is not None and not second.done()


async def test_a_caller_that_gave_up_takes_no_place() -> None:
    budget = TurnBudget(per_turn=2)
    done: list[int] = []
    tasks = [asyncio.create_task(_caller(budget, n, done)) for n in range(5)]
    await asyncio.sleep(0)  # all arrived: 0 and 1 went on, 2, 3 and 4 wait
    assert done == [0, 1]
    tasks[2].cancel()
    per_turn = await _per_turn(tasks, done)
    assert done == [0, 1, 3, 4]
    assert [n for n in per_turn if n] == [2]


def test_the_budget_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="per_turn must be at least 1"):
        TurnBudget(per_turn=0)
