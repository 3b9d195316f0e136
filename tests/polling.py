"""Waiting for a condition in tests: poll until it holds, fail with a clear message if it never
does. Bounded in time, so a broken condition fails the test instead of hanging it. This is the
suite's one polling helper: tests do not write their own ``while``/``sleep`` loops."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")

Message = str | Callable[[], str]
"""Said when the condition is not met: text, or a function giving it (e.g. the last state)."""


@overload
async def eventually(  # type: ignore[overload-overlap]
    check: Callable[[], Awaitable[T]],
    within: float = ...,
    *,
    interval: float = ...,
    message: Message = ...,
) -> T: ...


@overload
async def eventually(
    check: Callable[[], T], within: float = ..., *, interval: float = ..., message: Message = ...
) -> T: ...


async def eventually(
    check: Callable[[], object],
    within: float = 10.0,
    *,
    interval: float = 0.02,
    message: Message = "",
) -> object:
    """Return the first true value of ``check()`` (a function or a coroutine function), polled
    every ``interval`` seconds; raise AssertionError after ``within`` seconds, with
    ``message``."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            detail = message() if callable(message) else message
            suffix = f": {detail}" if detail else ""
            raise AssertionError(f"condition not met within {within:g} s{suffix}")
        await asyncio.sleep(interval)
