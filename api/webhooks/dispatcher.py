"""Sends the webhook outbox (:mod:`api.webhooks.outbox`): due ``pending`` deliveries are
claimed, POSTed concurrently and marked ``delivered``, retried with capped, jittered exponential
backoff, or ``failed`` once retrying would pass ``give_up_after`` from the event's creation.

Everything is in the database, so a restart picks up where the last run stopped. A delivery is
claimed before it is sent by moving its ``next_attempt_at`` a lease into the future with a
conditional UPDATE (:mod:`api.webhooks.claims`), due-ness and lease both judged by the database's
clock: two nodes sharing PostgreSQL never send the same attempt twice, whatever their own clocks
say, and a node that died mid-send leaves the delivery to be retried when the lease runs out
(delivery is at least once; receivers de-duplicate on the event ``id``). Retry times and breakers
use the node's clock. The dispatcher sleeps until the next delivery falls due, looks every
``poll_interval`` for rows other nodes queued, and is woken right after a transaction that queued an
event commits and whenever one of its deliveries ends.

The slots are shared fairly (:mod:`api.webhooks.fairness`): at most ``per_webhook`` deliveries of
a webhook and ``per_account`` of an account in flight, accounts served in turn, and a webhook
that keeps failing waits behind its circuit breaker without holding a slot. These bounds, like
the slots, are per node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from prometheus_client import Counter
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.cluster.clock import database_now
from api.database import describe_error
from api.keys import (
    DB_SESSIONMAKER,
    METRICS,
    SETTINGS,
    WEBHOOK_DISPATCHER,
    WEBHOOK_POLICY,
)
from api.models import WebhookDelivery, utc_now
from api.webhooks import claims as webhook_claims
from api.webhooks.claims import Claim
from api.webhooks.fairness import Breakers, pick
from api.webhooks.outbox import OUTBOX_WAKE
from api.webhooks.sender import Attempt, WebhookSender
from workers.tasks import cancel_and_wait

__all__ = ["Claim", "DeliveryPolicy", "WebhookDispatcher", "webhook_context"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryPolicy:
    """How often, how many at once, and for how long deliveries are tried."""

    poll_interval: float = 5.0
    """Longest wait between looks at the outbox. The dispatcher also looks when the next
    pending delivery (a retry, an expired lease) falls due, and at once when this app queues
    an event; the wait only matters for events another node queued and could not send."""
    batch_size: int = 32
    """Deliveries claimed per look."""
    concurrency: int = 16
    """Deliveries in flight at once (a slow receiver holds one slot, never the others)."""
    per_webhook: int = 2
    """Deliveries of one webhook in flight at once."""
    per_account: int = 8
    """Deliveries of one account's webhooks in flight at once (at most ``concurrency - 1``,
    so a slot is always left for the other accounts)."""
    breaker_threshold: int = 5
    """Failed attempts in a row after which a webhook's breaker opens: its deliveries then
    wait for the breaker's next probe (after the backoff of that many failures), and only the
    probe goes out until one is delivered."""
    timeout: float = 10.0
    """Seconds one POST may take, connection included."""
    backoff_base: float = 5.0
    """Delay before the first retry; it doubles with each failed attempt."""
    backoff_cap: float = 3600.0
    """Longest delay between two attempts."""
    jitter: float = 0.2
    """Each delay is scaled by a random factor in ``1 ± jitter``."""
    give_up_after: float = 24 * 3600.0
    """Seconds after the event a delivery stops being retried and becomes ``failed``."""
    shutdown_grace: float = 1.0
    """Seconds in-flight deliveries get to finish when the app stops."""

    @property
    def lease(self) -> float:
        """How long a claim holds a delivery: longer than any attempt can take."""
        return self.timeout + 30.0

    @property
    def account_slots(self) -> int:
        """Deliveries of one account in flight at once: ``per_account``, leaving one slot."""
        return max(1, min(self.per_account, self.concurrency - 1))

    @property
    def window(self) -> int:
        """Due deliveries looked at per claim, to choose from fairly."""
        return 4 * self.concurrency


class WebhookDispatcher:
    """Claims, sends and records deliveries in the background."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        sender: WebhookSender,
        policy: DeliveryPolicy | None = None,
        results: Counter | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """``results`` counts attempts by ``result`` (``delivered``, ``retry``, ``failed``).
        Claims are judged by the database's clock (what is due, how long a claim lasts), so
        nodes whose clocks disagree never take each other's claims; ``clock`` is this node's
        (retry times, breakers, giving up)."""
        self._sessionmaker = sessionmaker
        self._sender = sender
        self._policy = policy or DeliveryPolicy()
        self._results = results
        self._clock = clock or utc_now
        self._random = random.Random()
        self._wakeup = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._sending: dict[str, Claim] = {}
        """Deliveries claimed by this dispatcher and not finished, by id."""
        self._breakers = Breakers(self._policy.breaker_threshold)
        self._due = webhook_claims.due_query(
            per_webhook=self._policy.per_webhook, window=self._policy.window
        )
        self._runner: asyncio.Task[None] | None = None
        self._next_due_in: float | None = None
        """Seconds from the last claim until the earliest pending delivery not yet due then
        falls due (by the database's clock), and when that claim was (the loop's clock)."""
        self._next_due_at = 0.0

    def wake(self) -> None:
        """Look at the outbox now (events were just queued)."""
        self._wakeup.set()

    async def start(self) -> None:
        """Open the HTTP client and start polling."""
        await self._sender.start()
        self._runner = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def close(self) -> None:
        """Stop polling; give in-flight deliveries ``shutdown_grace`` seconds, then cancel them
        (their leases run out and they are sent again later)."""
        await cancel_and_wait(self._runner)
        self._runner = None
        if self._inflight:
            _, pending = await asyncio.wait(self._inflight, timeout=self._policy.shutdown_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._sender.close()

    async def _run(self) -> None:
        more_due, failing = True, False  # look at once: deliveries a previous run left
        while True:
            if not more_due:
                await self._sleep()
            await self._free_slot()
            try:
                more_due = await self._dispatch_due()
            except Exception as exc:  # the database may be away; try again at the next poll
                level = logging.DEBUG if failing else logging.WARNING
                log.log(level, "webhook outbox not read: %s", describe_error(exc))
                more_due, failing = False, True
                continue
            if failing:
                log.info("webhook outbox readable again")
                failing = False

    async def _sleep(self) -> None:
        wait = self._policy.poll_interval
        if self._next_due_in is not None:
            left = self._next_due_in - (asyncio.get_running_loop().time() - self._next_due_at)
            wait = min(wait, max(0.0, left))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._wakeup.wait()
        self._wakeup.clear()

    async def _free_slot(self) -> None:
        while len(self._inflight) >= self._policy.concurrency:
            await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)

    async def _dispatch_due(self) -> bool:
        """Claim and start what is due; returns whether more may be due already."""
        limit = min(self._policy.batch_size, self._policy.concurrency - len(self._inflight))
        claims, seen = await self.claim(limit)
        for claim in claims:
            task = asyncio.create_task(self._deliver(claim), name=f"webhook:{claim.delivery_id}")
            self._inflight.add(task)
            task.add_done_callback(self._finished)
        # Due deliveries left behind only for want of a free slot of their webhook or account
        # are looked at again when one of this node's deliveries ends (see _finished).
        return len(claims) == limit and seen > len(claims)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self.wake()  # a slot is free: a delivery waiting for its webhook's or account's turn

    async def claim(self, limit: int) -> tuple[list[Claim], int]:
        """Lease up to ``limit`` due deliveries to this dispatcher, chosen fairly among the
        accounts and webhooks with deliveries due; returns them and how many were looked at.
        Notes when the next pending delivery falls due, so the dispatcher sleeps until then."""
        policy, local_now = self._policy, self._clock()
        give_up = timedelta(seconds=policy.give_up_after)
        self._breakers.prune(local_now - give_up)
        async with self._sessionmaker() as session, session.begin():
            now = await database_now(session)
            lease_until = now + timedelta(seconds=policy.lease)
            candidates = await webhook_claims.due_candidates(session, self._due, now)
            webhook_ids = {c.webhook_id for c in candidates}
            for webhook_id, until in self._breakers.waiting(webhook_ids, local_now).items():
                given_up = await webhook_claims.hold_back(
                    session,
                    webhook_id,
                    now=now,
                    until=until,
                    give_up_created_before=until - give_up,
                )
                if given_up:
                    log.warning(
                        "webhook %s: %d deliveries given up while its breaker was open",
                        webhook_id,
                        given_up,
                    )
            chosen = pick(
                candidates,
                limit,
                in_flight=[c.candidate for c in self._sending.values()],
                per_webhook=policy.per_webhook,
                per_account=policy.account_slots,
                webhook_limits=self._breakers.limits(webhook_ids, local_now, policy.per_webhook),
            )
            rows = await webhook_claims.load(session, [c.delivery_id for c in chosen])
            claims = [
                webhook_claims.claim_of(delivery, webhook, lease_until)
                for delivery, webhook in rows
                if await webhook_claims.take(session, delivery, now=now, lease_until=lease_until)
            ]
            next_due = await webhook_claims.next_due(session, now)
        self._next_due_in = None if next_due is None else (next_due - now).total_seconds()
        self._next_due_at = asyncio.get_running_loop().time()
        for claim in claims:
            self._sending[claim.delivery_id] = claim
            self._breakers.sent(claim.webhook_id)
        return claims, len(candidates)

    async def _deliver(self, claim: Claim) -> None:
        try:
            attempt = await self._sender.post(
                claim.url,
                secret=claim.secret,
                body=claim.payload,
                event_id=claim.event_id,
                event_type=claim.event_type,
                now=self._clock().timestamp(),
            )
            self._judge(claim, attempt)
            await self._record(claim, attempt)
        except Exception as exc:  # left to the lease: it is tried again when the lease ends
            log.warning(
                "webhook delivery %s: outcome not recorded: %s",
                claim.delivery_id,
                describe_error(exc),
            )
        finally:
            del self._sending[claim.delivery_id]
            self._breakers.ended(claim.webhook_id)

    def _judge(self, claim: Claim, attempt: Attempt) -> None:
        """Tell the webhook's breaker how the attempt went."""
        if attempt.delivered:
            self._breakers.succeeded(claim.webhook_id)
            return
        breaker = self._breakers.get(claim.webhook_id)
        failures = (breaker.failures if breaker is not None else 0) + 1
        breaker = self._breakers.failed(claim.webhook_id, self._clock(), self.backoff(failures))
        if breaker.failures == breaker.threshold:
            log.warning(
                "webhook %s failed %d times in a row: its deliveries wait for a probe at %s",
                claim.webhook_id,
                breaker.failures,
                breaker.probe_at,
            )

    async def _record(self, claim: Claim, attempt: Attempt) -> None:
        """Store the outcome of ``attempt`` if the lease is still this node's."""
        result, values = self._outcome(claim, attempt, self._clock())
        async with self._sessionmaker() as session, session.begin():
            await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == claim.delivery_id,
                    WebhookDelivery.next_attempt_at == claim.lease_until,
                )
                .values(**values)
            )
        self._log(claim, attempt, result, values["attempts"])
        if self._results is not None:
            self._results.labels(result).inc()
        if result == "retry":
            self.wake()  # look again, to sleep until the retry falls due

    def _outcome(self, claim: Claim, attempt: Attempt, now: datetime) -> tuple[str, dict[str, Any]]:
        """``delivered``, ``retry`` or ``failed``, and the columns that say so."""
        values: dict[str, Any] = {
            "attempts": claim.attempts + 1,
            "last_status_code": attempt.status_code,
            "last_error": attempt.error,
        }
        if attempt.delivered:
            return "delivered", {**values, "status": "delivered", "delivered_at": now}
        retry_at = now + timedelta(seconds=self.backoff(claim.attempts + 1))
        if retry_at > claim.created_at + timedelta(seconds=self._policy.give_up_after):
            return "failed", {**values, "status": "failed"}
        return "retry", {**values, "next_attempt_at": retry_at}

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt: ``backoff_base`` doubled
        per attempt, scaled by the jitter, at most ``backoff_cap``."""
        policy = self._policy
        delay = policy.backoff_base * 2.0 ** min(attempts - 1, 62)
        jitter = self._random.uniform(1.0 - policy.jitter, 1.0 + policy.jitter)
        return min(policy.backoff_cap, delay * jitter)

    @staticmethod
    def _log(claim: Claim, attempt: Attempt, result: str, attempts: int) -> None:
        if result == "delivered":
            log.debug("webhook delivery %s delivered", claim.delivery_id)
            return
        level = logging.WARNING if result == "failed" else logging.INFO
        log.log(
            level,
            "webhook %s: delivery %s of event %s attempt %d failed (%s)%s",
            claim.webhook_id,
            claim.delivery_id,
            claim.event_id,
            attempts,
            attempt.error,
            "; giving up" if result == "failed" else "; will retry",
        )


async def webhook_context(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: run the dispatcher while the app runs; wake it after every commit
    that queued an event through the app's session factory."""
    policy = app[WEBHOOK_POLICY]
    sender = WebhookSender(
        timeout=policy.timeout, allow_private=app[SETTINGS].allow_private_targets
    )
    dispatcher = WebhookDispatcher(
        app[DB_SESSIONMAKER],
        sender=sender,
        policy=policy,
        results=app[METRICS].webhook_deliveries,
    )
    sessionmaker = app[DB_SESSIONMAKER]
    sessionmaker.configure(info={**sessionmaker.kw.get("info", {}), OUTBOX_WAKE: dispatcher.wake})
    app[WEBHOOK_DISPATCHER] = dispatcher
    await dispatcher.start()
    try:
        yield
    finally:
        await dispatcher.close()
