"""Sends the webhook outbox (:mod:`api.outbox`): due ``pending`` deliveries are claimed, POSTed
concurrently and marked ``delivered``, retried with capped, jittered exponential backoff, or
``failed`` once retrying would pass ``give_up_after`` from the event's creation.

Everything is in the database, so a restart picks up where the last run stopped. A delivery is
claimed before it is sent by moving its ``next_attempt_at`` a lease into the future with a
conditional UPDATE: two nodes sharing PostgreSQL never send the same attempt twice, and a node
that died mid-send leaves the delivery to be retried when the lease runs out (delivery is at
least once; receivers de-duplicate on the event ``id``). The dispatcher polls, and is also woken
right after a transaction that queued an event commits.
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
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.database import describe_error
from api.keys import DB_SESSIONMAKER, SETTINGS
from api.metrics import METRICS
from api.models import Webhook, WebhookDelivery, utc_now
from api.outbox import OUTBOX_WAKE
from api.webhook_sender import Attempt, WebhookSender

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


@dataclass(frozen=True)
class Claim:
    """A delivery this node holds until ``lease_until``."""

    delivery_id: str
    webhook_id: str
    event_id: str
    event_type: str
    payload: str
    attempts: int
    created_at: datetime
    lease_until: datetime
    url: str
    secret: str


class WebhookDispatcher:
    """Claims, sends and records deliveries in the background."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        sender: WebhookSender,
        policy: DeliveryPolicy | None = None,
        results: Counter | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        """``results`` counts attempts by ``result`` (``delivered``, ``retry``, ``failed``)."""
        self._sessionmaker = sessionmaker
        self._sender = sender
        self._policy = policy or DeliveryPolicy()
        self._results = results
        self._clock = clock
        self._random = random.Random()
        self._wakeup = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._next_due: datetime | None = None
        """When the earliest pending delivery not yet due falls due (seen by the last claim)."""

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
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
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
        if self._next_due is not None:
            wait = min(wait, max(0.0, (self._next_due - self._clock()).total_seconds()))
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
            task.add_done_callback(self._inflight.discard)
        return seen == limit

    async def claim(self, limit: int) -> tuple[list[Claim], int]:
        """Lease up to ``limit`` due deliveries to this dispatcher; returns them and how many
        were due (fewer are returned when another node took some first). The same query notes
        when the next pending delivery falls due, so the dispatcher sleeps until then."""
        now = self._clock()
        lease_until = now + timedelta(seconds=self._policy.lease)
        async with self._sessionmaker() as session, session.begin():
            pending = (
                select(WebhookDelivery, Webhook)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(WebhookDelivery.status == "pending")
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                .limit(limit + 1)
            )
            rows = (await session.execute(pending)).all()
            due = [(d, w) for d, w in rows[:limit] if d.next_attempt_at <= now]
            later = rows[len(due)][0].next_attempt_at if len(due) < len(rows) else None
            self._next_due = later if later is not None and later > now else None
            claims = [
                _claim_of(delivery, webhook, lease_until)
                for delivery, webhook in due
                if await _take(session, delivery, lease_until)
            ]
        if claims and (self._next_due is None or lease_until < self._next_due):
            self._next_due = lease_until  # a lease this node may not close (see _deliver)
        return claims, len(due)

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
            await self._record(claim, attempt)
        except Exception as exc:  # left to the lease: it is tried again when the lease ends
            log.warning(
                "webhook delivery %s: outcome not recorded: %s",
                claim.delivery_id,
                describe_error(exc),
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


async def _take(session: AsyncSession, delivery: WebhookDelivery, lease_until: datetime) -> bool:
    """Lease ``delivery`` until ``lease_until`` unless another node claimed it meanwhile."""
    taken = await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery.id,
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at == delivery.next_attempt_at,
        )
        .values(next_attempt_at=lease_until)
    )
    return bool(taken.rowcount == 1)  # type: ignore[attr-defined]


def _claim_of(delivery: WebhookDelivery, webhook: Webhook, lease_until: datetime) -> Claim:
    return Claim(
        delivery_id=delivery.id,
        webhook_id=webhook.id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        payload=delivery.payload,
        attempts=delivery.attempts,
        created_at=delivery.created_at,
        lease_until=lease_until,
        url=webhook.url,
        secret=webhook.secret,
    )


WEBHOOK_POLICY = web.AppKey("webhook_policy", DeliveryPolicy)
"""How the app's dispatcher delivers (set by :func:`api.app.create_app`)."""
WEBHOOK_DISPATCHER = web.AppKey("webhook_dispatcher", WebhookDispatcher)
"""The app's dispatcher (started by :func:`webhook_context`)."""


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
