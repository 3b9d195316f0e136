"""The count and the log of RTMP connections closed early.

Every connection the listener closes early is counted by its
:class:`~ingest.limits.CloseReason` (the counts are exported to ``/metrics``) and logged with
it: a warning at most once per reason every :data:`REFUSAL_WARNING_INTERVAL` seconds, saying
how many were held back, the others at DEBUG, so that a client opening connections quickly
cannot flood the log.

A plain object driven by an injected clock; :class:`~ingest.server.RTMPServer` owns one, so
nothing here is module-level state.
"""

from __future__ import annotations

import logging

from ingest.limits import Clock, CloseReason
from ingest.ratelimit import WarningRateLimiter

REFUSAL_WARNING_INTERVAL = 10.0
"""Seconds between two warnings about connections closed early for the same reason."""


class Refusals:
    """Connections closed early: :attr:`counts` by reason, and lines in ``log``."""

    def __init__(self, log: logging.Logger, *, clock: Clock) -> None:
        self._log = log
        self._warnings = WarningRateLimiter(REFUSAL_WARNING_INTERVAL, clock=clock)
        self.counts: dict[str, int] = {}
        """Connections closed early, by :class:`~ingest.limits.CloseReason` value."""

    def closed_early(
        self, client: str, reason: CloseReason, detail: str, level: int = logging.WARNING
    ) -> None:
        """Count a connection of ``client`` closed early and log it (warnings rate-limited per
        reason)."""
        self.counts[reason.value] = self.counts.get(reason.value, 0) + 1
        if level >= logging.WARNING:
            held_back = self._warnings.allow(reason)
            if held_back is None:
                level = logging.DEBUG
            elif held_back:
                detail = f"{detail} ({held_back} more since the last warning)"
        self._log.log(
            level, "RTMP connection from %s closed (%s): %s", client, reason.value, detail
        )
