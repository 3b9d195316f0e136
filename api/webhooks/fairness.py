"""Who gets the next webhook delivery slots: pure rules, no I/O, time passed in.

A node sends at most ``concurrency`` deliveries at once. So that one account (twenty webhooks
pointing at a server that accepts and never answers, a stream that flaps) cannot hold them all,
:func:`pick` hands free slots out with three bounds:

- at most ``per_webhook`` deliveries of one webhook in flight;
- at most ``per_account`` deliveries of one account in flight, fewer than the slots, so a slot
  is always left for the other accounts, even when one account queued its work first;
- among the accounts with due deliveries, the one with the fewest in flight goes first (the
  oldest due delivery breaks ties): accounts take turns.

A webhook whose deliveries keep failing gets a :class:`CircuitBreaker`: after ``threshold``
failed attempts in a row it opens, its deliveries wait (without a slot) until the breaker's next
probe, and then a single delivery goes out as the probe; success closes the breaker, failure
opens it again for the next backoff step.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Candidate:
    """A due delivery, or one in flight."""

    delivery_id: str
    webhook_id: str
    account_id: str
    """The account owning the webhook."""


def pick(
    candidates: Sequence[Candidate],
    free: int,
    *,
    in_flight: Iterable[Candidate],
    per_webhook: int,
    per_account: int,
    webhook_limits: Mapping[str, int] | None = None,
) -> list[Candidate]:
    """Up to ``free`` of ``candidates`` (oldest due first within each account) to send now,
    given the deliveries already ``in_flight``. ``webhook_limits`` lowers ``per_webhook`` for
    some webhooks (their breakers: 0 while open, 1 for the probe)."""
    limits = webhook_limits or {}
    flying = list(in_flight)
    by_webhook = Counter(c.webhook_id for c in flying)
    by_account = Counter(c.account_id for c in flying)
    queues: dict[str, deque[Candidate]] = {}
    for candidate in candidates:
        queues.setdefault(candidate.account_id, deque()).append(candidate)
    arrival = {account: n for n, account in enumerate(queues)}
    chosen: list[Candidate] = []
    while len(chosen) < free:
        ready = [a for a, queue in queues.items() if queue and by_account[a] < per_account]
        if not ready:
            break
        account = min(ready, key=lambda a: (by_account[a], arrival[a]))
        candidate = queues[account].popleft()
        limit = min(per_webhook, limits.get(candidate.webhook_id, per_webhook))
        if by_webhook[candidate.webhook_id] >= limit:
            continue  # its webhook is at its limit: the next of this account's, if any
        chosen.append(candidate)
        by_webhook[candidate.webhook_id] += 1
        by_account[account] += 1
    return chosen


@dataclass
class CircuitBreaker:
    """The health of one webhook, as its attempts showed it."""

    threshold: int
    """Failed attempts in a row that open the breaker."""
    failures: int = 0
    """Failed attempts since the last success."""
    probe_at: datetime | None = None
    """While open: when the next probe may go out."""
    probing: bool = False
    """A probe is in flight."""
    last_failure_at: datetime | None = None
    """When an attempt last failed."""

    @property
    def tripped(self) -> bool:
        """Open or probing: the webhook failed ``threshold`` times in a row."""
        return self.failures >= self.threshold

    def limit(self, now: datetime, per_webhook: int) -> int:
        """How many of the webhook's deliveries may be in flight now: ``per_webhook`` while
        closed, one probe once the breaker's wait is over, none otherwise."""
        if not self.tripped:
            return per_webhook
        if self.probing or (self.probe_at is not None and now < self.probe_at):
            return 0
        return 1

    def waiting_until(self, now: datetime) -> datetime | None:
        """While open: when the webhook's due deliveries may next go out (the probe)."""
        if self.tripped and self.probe_at is not None and now < self.probe_at:
            return self.probe_at
        return None

    def sent(self) -> None:
        """A delivery of the webhook went out (the probe, if the breaker is tripped)."""
        if self.tripped:
            self.probing = True

    def succeeded(self) -> None:
        """An attempt was delivered: close."""
        self.failures, self.probe_at, self.probing = 0, None, False

    def failed(self, now: datetime, delay: float) -> None:
        """An attempt failed; once tripped, the next probe waits ``delay`` seconds."""
        self.failures += 1
        self.probing = False
        self.last_failure_at = now
        if self.tripped:
            self.probe_at = now + timedelta(seconds=delay)

    def ended(self) -> None:
        """A delivery ended without an outcome (it was not recorded): no probe in flight."""
        self.probing = False


class Breakers:
    """The :class:`CircuitBreaker` of every webhook that failed lately, on this node."""

    def __init__(self, threshold: int) -> None:
        self._threshold = threshold
        self._breakers: dict[str, CircuitBreaker] = {}

    def __len__(self) -> int:
        return len(self._breakers)

    def get(self, webhook_id: str) -> CircuitBreaker | None:
        """The breaker of ``webhook_id``, ``None`` when it is closed and has no failures."""
        return self._breakers.get(webhook_id)

    def limits(self, webhook_ids: Iterable[str], now: datetime, per_webhook: int) -> dict[str, int]:
        """The in-flight limits of those of ``webhook_ids`` whose breakers are tripped."""
        limits = {}
        for webhook_id in webhook_ids:
            breaker = self._breakers.get(webhook_id)
            if breaker is not None and breaker.tripped:
                limits[webhook_id] = breaker.limit(now, per_webhook)
        return limits

    def waiting(self, webhook_ids: Iterable[str], now: datetime) -> dict[str, datetime]:
        """Those of ``webhook_ids`` whose breakers are open, with their next probe's time."""
        found = {}
        for webhook_id in set(webhook_ids):
            breaker = self._breakers.get(webhook_id)
            until = breaker.waiting_until(now) if breaker is not None else None
            if until is not None:
                found[webhook_id] = until
        return found

    def sent(self, webhook_id: str) -> None:
        """A delivery of ``webhook_id`` went out."""
        breaker = self._breakers.get(webhook_id)
        if breaker is not None:
            breaker.sent()

    def succeeded(self, webhook_id: str) -> None:
        """A delivery of ``webhook_id`` was delivered: forget its failures."""
        self._breakers.pop(webhook_id, None)

    def failed(self, webhook_id: str, now: datetime, delay: float) -> CircuitBreaker:
        """An attempt of ``webhook_id`` failed; returns its breaker."""
        breaker = self._breakers.setdefault(webhook_id, CircuitBreaker(self._threshold))
        breaker.failed(now, delay)
        return breaker

    def ended(self, webhook_id: str) -> None:
        """A delivery of ``webhook_id`` ended without an outcome."""
        breaker = self._breakers.get(webhook_id)
        if breaker is not None:
            breaker.ended()

    def prune(self, before: datetime) -> None:
        """Forget breakers whose last failure is older than ``before`` and that have nothing
        in flight (their webhooks were deleted, or their deliveries all given up)."""
        stale = [
            webhook_id
            for webhook_id, breaker in self._breakers.items()
            if not breaker.probing
            and breaker.last_failure_at is not None
            and breaker.last_failure_at < before
        ]
        for webhook_id in stale:
            del self._breakers[webhook_id]
