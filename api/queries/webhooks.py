"""Queries of webhooks (an account's subscriptions) and the deliveries of one.

The outbox, the dispatcher's claims and its results have their own statements
(:mod:`api.webhooks.outbox`, :mod:`api.webhooks.claims`, :mod:`api.webhooks.dispatcher`).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.models import Webhook, WebhookDelivery, new_object_id, utc_now


async def create_webhook(
    session: AsyncSession, account_id: str, url: str, events: Sequence[str], secret: str
) -> Webhook:
    """A new webhook of ``account_id`` sending ``events`` to ``url``, signed with ``secret``."""
    webhook = Webhook(
        id=new_object_id(),
        account_id=account_id,
        url=url,
        events=list(events),
        secret=secret,
        created_at=utc_now(),
    )
    session.add(webhook)
    return webhook


async def count_webhooks(session: AsyncSession, account_id: str) -> int:
    """How many webhooks ``account_id`` has (not deleted)."""
    query = (
        select(func.count())
        .select_from(Webhook)
        .where(Webhook.account_id == account_id, Webhook.deleted_at.is_(None))
    )
    return int((await session.execute(query)).scalar_one())


async def list_webhooks(session: AsyncSession, account_id: str) -> Sequence[Webhook]:
    """Every webhook of ``account_id`` (not deleted), newest first."""
    query = (
        select(Webhook)
        .where(Webhook.account_id == account_id, Webhook.deleted_at.is_(None))
        .order_by(Webhook.created_at.desc(), Webhook.id.desc())
    )
    return (await session.execute(query)).scalars().all()


async def get_webhook(session: AsyncSession, account_id: str, webhook_id: str) -> Webhook | None:
    """The webhook ``webhook_id`` of ``account_id``, unless deleted (other accounts' ->
    ``None``)."""
    query = select(Webhook).where(
        Webhook.id == webhook_id,
        Webhook.account_id == account_id,
        Webhook.deleted_at.is_(None),
    )
    return (await session.execute(query)).scalar_one_or_none()


async def delete_webhook(session: AsyncSession, webhook: Webhook) -> Webhook:
    """Mark ``webhook`` deleted and delete its deliveries (their payloads with them)."""
    webhook.deleted_at = utc_now()
    await session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id))
    return webhook


async def list_webhook_deliveries(
    session: AsyncSession, webhook_id: str, offset: int, limit: int
) -> tuple[Sequence[WebhookDelivery], int]:
    """One page of the deliveries of ``webhook_id``, newest first, and the total count."""
    where = WebhookDelivery.webhook_id == webhook_id
    total = (
        await session.execute(select(func.count()).select_from(WebhookDelivery).where(where))
    ).scalar_one()
    query = (
        select(WebhookDelivery)
        .where(where)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return (await session.execute(query)).scalars().all(), total
