"""The outbox queries of the webhook dispatcher: which deliveries are due (a fair window of
them), leasing one, holding back the deliveries of a webhook whose breaker is open, and when the
next delivery falls due.

A delivery is claimed by moving its ``next_attempt_at`` a lease into the future with a
conditional UPDATE (it succeeds only if the row is still pending with the value read), so two
nodes sharing PostgreSQL never send the same attempt twice; every other change made here also
touches only rows that are due, which no node holds a lease on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.models import Webhook, WebhookDelivery
from api.webhooks.fairness import Candidate

HELD_BACK_TOO_LONG = "given up: the webhook kept failing and its retry period ended"
"""``last_error`` of a delivery that would have waited for an open breaker past its retry
period."""


@dataclass(frozen=True)
class Claim:
    """A delivery this node holds until ``lease_until``."""

    delivery_id: str
    webhook_id: str
    account_id: str
    event_id: str
    event_type: str
    payload: str
    attempts: int
    created_at: datetime
    lease_until: datetime
    url: str
    secret: str

    @property
    def candidate(self) -> Candidate:
        """The delivery as the slot rules see it."""
        return Candidate(self.delivery_id, self.webhook_id, self.account_id)


def due_query(*, per_webhook: int, window: int) -> Select[tuple[str, str, str]]:
    """The query of :func:`due_candidates`: at most ``window`` due deliveries, at most
    ``per_webhook`` of each webhook, taken in turn from each account (every account's oldest,
    then every account's second oldest, …), so an account with thousands due does not fill the
    window. Built once per dispatcher (building it costs more than running it); the time is the
    ``now`` parameter."""
    delivery = WebhookDelivery
    rank_in_webhook = (
        func.row_number()
        .over(
            partition_by=delivery.webhook_id,
            order_by=(delivery.next_attempt_at, delivery.id),
        )
        .label("rank_in_webhook")
    )
    due = (
        select(
            delivery.id,
            delivery.webhook_id,
            Webhook.account_id,
            delivery.next_attempt_at,
            rank_in_webhook,
        )
        .join(Webhook, Webhook.id == delivery.webhook_id)
        .where(delivery.status == "pending", delivery.next_attempt_at <= bindparam("now"))
        .subquery()
    )
    rank_in_account = (
        func.row_number()
        .over(
            partition_by=due.c.account_id,
            order_by=(due.c.rank_in_webhook, due.c.next_attempt_at, due.c.id),
        )
        .label("rank_in_account")
    )
    ranked = (
        select(due.c.id, due.c.webhook_id, due.c.account_id, due.c.next_attempt_at, rank_in_account)
        .where(due.c.rank_in_webhook <= per_webhook)
        .subquery()
    )
    return (
        select(ranked.c.id, ranked.c.webhook_id, ranked.c.account_id)
        .order_by(ranked.c.rank_in_account, ranked.c.next_attempt_at, ranked.c.id)
        .limit(window)
    )


async def due_candidates(
    session: AsyncSession, query: Select[tuple[str, str, str]], now: datetime
) -> list[Candidate]:
    """The deliveries :func:`due_query` finds due at ``now``."""
    rows = (await session.execute(query, {"now": now})).all()
    return [Candidate(row.id, row.webhook_id, row.account_id) for row in rows]


async def load(
    session: AsyncSession, delivery_ids: Sequence[str]
) -> list[tuple[WebhookDelivery, Webhook]]:
    """The deliveries ``delivery_ids`` with their webhooks, in that order."""
    if not delivery_ids:
        return []
    query = (
        select(WebhookDelivery, Webhook)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(WebhookDelivery.id.in_(delivery_ids))
    )
    found = {d.id: (d, w) for d, w in (await session.execute(query)).all()}
    return [found[i] for i in delivery_ids if i in found]


async def take(
    session: AsyncSession, delivery: WebhookDelivery, *, now: datetime, lease_until: datetime
) -> bool:
    """Lease ``delivery`` until ``lease_until`` unless another node claimed it meanwhile.

    The row must still be due at ``now``: ``delivery`` was loaded by a later statement than
    the one that found it due, and on PostgreSQL each statement sees what committed before it,
    so it may already carry another node's fresh lease, which an equality check alone would
    then match."""
    taken = await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery.id,
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at == delivery.next_attempt_at,
            WebhookDelivery.next_attempt_at <= now,
        )
        .values(next_attempt_at=lease_until)
    )
    return bool(taken.rowcount == 1)  # type: ignore[attr-defined]


def claim_of(delivery: WebhookDelivery, webhook: Webhook, lease_until: datetime) -> Claim:
    """The claim of ``delivery``, leased until ``lease_until``."""
    return Claim(
        delivery_id=delivery.id,
        webhook_id=webhook.id,
        account_id=webhook.account_id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        payload=delivery.payload,
        attempts=delivery.attempts,
        created_at=delivery.created_at,
        lease_until=lease_until,
        url=webhook.url,
        secret=webhook.secret,
    )


async def hold_back(
    session: AsyncSession,
    webhook_id: str,
    *,
    now: datetime,
    until: datetime,
    give_up_created_before: datetime,
) -> int:
    """Move the due deliveries of ``webhook_id`` to ``until`` (its breaker's next probe);
    those created before ``give_up_created_before`` would then be sent past their retry period
    and become ``failed`` instead (returns how many). Rows in flight have a lease in the future
    and stay."""
    due = (
        WebhookDelivery.webhook_id == webhook_id,
        WebhookDelivery.status == "pending",
        WebhookDelivery.next_attempt_at <= now,
    )
    given_up = await session.execute(
        update(WebhookDelivery)
        .where(*due, WebhookDelivery.created_at < give_up_created_before)
        .values(status="failed", last_error=HELD_BACK_TOO_LONG)
    )
    await session.execute(update(WebhookDelivery).where(*due).values(next_attempt_at=until))
    return int(given_up.rowcount)  # type: ignore[attr-defined]


async def next_due(session: AsyncSession, now: datetime) -> datetime | None:
    """When the earliest pending delivery that is not due yet falls due (a retry, a lease
    running out, a breaker's probe)."""
    query = select(func.min(WebhookDelivery.next_attempt_at)).where(
        WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at > now
    )
    found: datetime | None = (await session.execute(query)).scalar()
    return found
