"""Waiting out a busy connection pool.

The engine's pool gives up after a short wait (``api.database.DB_CONNECT_TIMEOUT``) so that API
calls fail fast while the database is away. Work that would rather wait when the pool is merely
busy (a publish's key check, a session's webhook event, when many encoders start at once) runs
through :func:`when_pool_free`. A pool timeout happens before any statement runs, so trying
again cannot apply anything twice.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import TimeoutError as PoolTimeout

T = TypeVar("T")

__all__ = ["PoolTimeout", "when_pool_free"]


async def when_pool_free(
    work: Callable[[], Awaitable[T]],
    *,
    patience: float,
    on_wait: Callable[[], None] | None = None,
) -> T:
    """``await work()``, again each time it fails with a pool timeout, for up to ``patience``
    seconds; ``on_wait`` is called before each new try. Other errors are raised at once."""
    give_up_at = time.monotonic() + patience
    while True:
        try:
            return await work()
        except PoolTimeout:
            if time.monotonic() >= give_up_at:
                raise
            if on_wait is not None:
                on_wait()
