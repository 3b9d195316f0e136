"""The webhook outbox: an event is written as one ``webhook_deliveries`` row per subscribed
webhook, in the caller's transaction, so the state change it reports and its deliveries commit
(or roll back) together. :mod:`api.webhooks.dispatcher` sends the rows.

A webhook subscribes with patterns: an exact event type (``recording.ready``), a family wildcard
(``livestream.*``) or ``*`` for everything.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Final, Literal, get_args

from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.models import Account, LiveStream, Webhook, WebhookDelivery, new_object_id, utc_now
from api.schemas.livestreams import iso_timestamp

EventType = Literal[
    "livestream.started",
    "livestream.reconnected",
    "livestream.ended",
    "recording.ready",
    "recording.failed",
    "restream.connected",
    "restream.failed",
]
"""Every event type liverelay sends."""
EventPattern = Literal["*", "livestream.*", "recording.*", "restream.*", EventType]
"""What a webhook's ``events`` list may contain: a type, a family wildcard, or ``*``."""
EVENT_TYPES: Final[tuple[str, ...]] = get_args(EventType)
EVENT_PATTERNS: Final[tuple[str, ...]] = get_args(EventPattern)

OUTBOX_WAKE: Final = "liverelay.outbox_wake"
"""Key of ``Session.info`` holding a callable to run after a transaction that queued an event
commits (the dispatcher's wake-up, configured on the app's session factory)."""


def pattern_matches(pattern: str, event_type: str) -> bool:
    """Whether subscription ``pattern`` covers ``event_type``."""
    if pattern == "*" or pattern == event_type:
        return True
    family, _, rest = pattern.partition(".")
    return rest == "*" and event_type.startswith(f"{family}.")


def subscribes_to(patterns: Iterable[str], event_type: str) -> bool:
    """Whether any of ``patterns`` covers ``event_type``."""
    return any(pattern_matches(pattern, event_type) for pattern in patterns)


def event_body(
    event_id: str,
    event_type: str,
    created_at: str,
    data: Mapping[str, Any],
    sequence: int | None = None,
) -> str:
    """The exact JSON body of an event: ``{id, type, createdAt, sequence, data}``, compact
    (``sequence`` only for an event of a stream)."""
    envelope: dict[str, Any] = {"id": event_id, "type": event_type, "createdAt": created_at}
    if sequence is not None:
        envelope["sequence"] = sequence
    envelope["data"] = data
    return json.dumps(envelope, separators=(",", ":"))


async def enqueue(
    session: AsyncSession,
    *,
    account_id: str,
    event_type: str,
    data: Mapping[str, Any],
    stream_id: str | None = None,
) -> str | None:
    """Queue ``event_type`` with ``data`` for every live webhook of ``account_id`` subscribed to
    it, in ``session``'s transaction; returns the event id, or ``None`` when no webhook wants it.

    An event of stream ``stream_id`` gets the stream's next ``sequence`` number, taken by
    :func:`next_sequence` in the same transaction."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    candidates = await _live_webhooks(session, account_id)
    webhooks = [w for w in candidates if subscribes_to(w.events, event_type)]
    if not webhooks:
        return None
    sequence = None if stream_id is None else await next_sequence(session, stream_id)
    event_id, now = new_object_id(), utc_now()
    body = event_body(event_id, event_type, iso_timestamp(now), data, sequence)
    session.add_all(
        _delivery(webhook.id, event_id, event_type, body, now, sequence) for webhook in webhooks
    )
    await session.flush()
    _wake_after_commit(session)
    return event_id


async def next_sequence(session: AsyncSession, stream_id: str) -> int:
    """Take the next event sequence number of ``stream_id``: one ``UPDATE … RETURNING`` of the
    stream's counter. The row stays locked until the transaction ends, so transactions queuing
    events of one stream (on any node) take their numbers one after the other and commit in
    that order: a receiver never sees a number that a transaction still open may undercut."""
    statement = (
        update(LiveStream)
        .where(LiveStream.id == stream_id)
        .values(event_sequence=LiveStream.event_sequence + 1)
        .returning(LiveStream.event_sequence)
        .execution_options(synchronize_session=False)
    )
    sequence = (await session.execute(statement)).scalar_one_or_none()
    if sequence is None:
        raise ValueError(f"no live stream {stream_id!r} to number an event of")
    return int(sequence)


async def _live_webhooks(session: AsyncSession, account_id: str) -> list[Webhook]:
    query = (
        select(Webhook)
        .join(Account, Account.id == Webhook.account_id)
        .where(
            Webhook.account_id == account_id,
            Webhook.deleted_at.is_(None),
            Account.deleted_at.is_(None),
        )
        .order_by(Webhook.created_at, Webhook.id)
    )
    return list((await session.execute(query)).scalars())


def _delivery(
    webhook_id: str,
    event_id: str,
    event_type: str,
    body: str,
    now: datetime,
    sequence: int | None,
) -> WebhookDelivery:
    return WebhookDelivery(
        id=new_object_id(),
        webhook_id=webhook_id,
        event_id=event_id,
        event_type=event_type,
        payload=body,
        sequence=sequence,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )


def _wake_after_commit(session: AsyncSession) -> None:
    """Have the dispatcher of this session's app look at the outbox once the rows are visible
    (without it they still go out at the next poll)."""
    wake: Callable[[], None] | None = session.info.get(OUTBOX_WAKE)
    if wake is not None:
        event.listen(session.sync_session, "after_commit", lambda _session: wake(), once=True)
