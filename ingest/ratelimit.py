"""Warnings at a limited rate: one line per kind of event per interval, with a count of the
lines held back, so a peer that repeats something quickly cannot flood the log (journald
drops lines past its own rate limit, real ones included).

A plain object driven by an injected clock; whoever logs owns one, so nothing here is
module-level state.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

__all__ = ["WarningRateLimiter"]


class WarningRateLimiter:
    """Allows one warning per key every ``interval`` seconds of ``clock``.

    Keys name kinds of event (a close reason, an output); callers keep them to a small, fixed
    set, since each key is remembered.
    """

    def __init__(self, interval: float, *, clock: Callable[[], float]) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval}")
        self.interval = interval
        self._clock = clock
        self._last: dict[Hashable, float] = {}
        self._held_back: dict[Hashable, int] = {}

    def allow(self, key: Hashable) -> int | None:
        """Whether a warning for ``key`` may be logged now: ``None`` if not (it is counted as
        held back), else how many were held back since the last one logged."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held_back[key] = self._held_back.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held_back.pop(key, 0)
