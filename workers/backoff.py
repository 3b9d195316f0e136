"""How long a supervised output waits before its next attempt: capped, jittered exponential
backoff. Pure: the random source is passed in, so a seeded one gives reproducible delays."""

from __future__ import annotations

import random
from dataclasses import dataclass


def backoff_delay(
    retries: int,
    *,
    initial: float,
    maximum: float,
    factor: float,
    jitter: float,
    rng: random.Random,
) -> float:
    """Seconds to wait before attempt ``retries + 1``: ``initial * factor**(retries - 1)`` capped
    at ``maximum``, times a uniform factor in ``[1 - jitter, 1 + jitter]``, never above
    ``maximum``."""
    exponent = min(max(retries - 1, 0), 64)  # 2.0**64 is already far past any cap
    base = min(maximum, initial * factor**exponent)
    return max(0.0, min(maximum, base * (1.0 + rng.uniform(-jitter, jitter))))


@dataclass(frozen=True)
class Backoff:
    """The backoff of one output (see :func:`backoff_delay`)."""

    initial: float = 1.0
    """Seconds before the first retry."""
    maximum: float = 30.0
    """No wait is longer than this many seconds."""
    factor: float = 2.0
    """Each further failure multiplies the wait by this much."""
    jitter: float = 0.2
    """Relative spread of each wait (0.2: up to 20 % shorter or longer)."""

    def delay(self, retries: int, rng: random.Random) -> float:
        """Seconds to wait after ``retries`` consecutive failed attempts."""
        return backoff_delay(
            retries,
            initial=self.initial,
            maximum=self.maximum,
            factor=self.factor,
            jitter=self.jitter,
            rng=rng,
        )
