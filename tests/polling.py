"""Waiting for a condition in tests: poll until it holds, fail with a clear message if it never
does. Bounded in time, so a broken condition fails the test instead of hanging it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(
    check: Callable[[], bool], within: float = 10.0, *, interval: float = 0.02
) -> None:
    """Return once ``check()`` is true; raise AssertionError after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within:g} s")
        await asyncio.sleep(interval)
