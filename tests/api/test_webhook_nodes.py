"""Webhook delivery with several nodes on one PostgreSQL database: every event reaches every
webhook once whichever node sends it, and a delivery a dead node had claimed is sent by another
once the claim runs out."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import text

from api.cluster.clock import clock_of
from api.keys import DB_SESSIONMAKER
from api.models import utc_now
from api.webhooks.dispatcher import WebhookDispatcher
from api.webhooks.sender import WebhookSender
from tests.api.conftest import AccountCredentials, new_account
from tests.api.webhook_support import (
    FAST,
    Receiver,
    StartApp,
    create_webhook,
    deliveries,
    hook_settings,
    queue_event,
    receiver,
    start_app,
    stop_dispatcher,
)
from tests.polling import eventually

__all__ = ["hook_settings", "receiver", "start_app"]  # fixtures

EVENTS = 12


@pytest.fixture
def database_url(postgresql_url: str) -> str:
    """These tests are about nodes sharing PostgreSQL (the cluster database)."""
    return postgresql_url


def event_ids(receiver: Receiver, name: str) -> Counter[str]:
    """How often each event id reached endpoint ``name``."""
    return Counter(json.loads(r.body)["id"] for r in receiver.on(name))


async def all_delivered(client: TestClient, account: AccountCredentials, webhook_id: str) -> bool:
    """Whether the :data:`EVENTS` deliveries of ``webhook_id`` are all delivered."""
    rows = await deliveries(client, account, webhook_id)
    return len(rows) == EVENTS and all(row["status"] == "delivered" for row in rows)


async def test_two_nodes_deliver_each_event_to_each_webhook_once(
    start_app: StartApp, receiver: Receiver
) -> None:
    nodes = [await start_app(), await start_app()]
    account = await new_account(nodes[0])
    hooks = [await create_webhook(nodes[0], account, receiver.url(name)) for name in "ab"]

    # Both nodes queue events (each wakes its own dispatcher; the other finds them by polling).
    queued = await asyncio.gather(*(queue_event(nodes[i % 2], account.id) for i in range(EVENTS)))

    for hook in hooks:
        await eventually(lambda hook=hook: all_delivered(nodes[1], account, hook["id"]))
    expected = Counter({event_id: 1 for event_id in queued})
    assert event_ids(receiver, "a") == expected
    assert event_ids(receiver, "b") == expected


async def test_a_delivery_claimed_by_a_dead_node_is_sent_by_another_when_its_claim_ends(
    start_app: StartApp, receiver: Receiver
) -> None:
    survivor = await start_app()
    await stop_dispatcher(survivor)  # it sends nothing until the dead node has claimed
    account = await new_account(survivor)
    webhook = await create_webhook(survivor, account, receiver.url("ok"))
    event_id = await queue_event(survivor, account.id)
    sessionmaker = survivor.app[DB_SESSIONMAKER]
    dead = WebhookDispatcher(
        sessionmaker, sender=WebhookSender(timeout=1.0, allow_private=True), policy=FAST
    )
    claims, _ = await dead.claim(1000)
    (claim,) = [c for c in claims if c.event_id == event_id]  # then the node dies, unsent
    other = await start_app()
    # The claim is live: the other node's dispatcher leaves the delivery alone. It claims
    # nothing of ours in a pass over the outbox.
    other_node = WebhookDispatcher(
        other.app[DB_SESSIONMAKER],
        sender=WebhookSender(timeout=1.0, allow_private=True),
        policy=FAST,
    )
    taken, _ = await other_node.claim(1000)
    assert event_id not in {c.event_id for c in taken}

    async with sessionmaker() as session, session.begin():
        clock = clock_of(session)
        expired = await session.execute(
            text(
                f"UPDATE webhook_deliveries SET next_attempt_at = {clock.plus('s')} WHERE id = :id"
            ),
            {"s": -1.0, "id": claim.delivery_id},
        )
        assert expired.rowcount == 1  # type: ignore[attr-defined]

    got = await receiver.next()
    assert json.loads(got.body)["id"] == event_id

    async def delivered() -> bool:
        rows = await deliveries(other, account, webhook["id"])
        return rows[0]["status"] == "delivered" and rows[0]["attempts"] == 1

    await eventually(delivered)
    assert event_ids(receiver, "ok") == Counter({event_id: 1})


async def test_a_node_whose_clock_runs_ahead_leaves_another_nodes_claim_alone(
    start_app: StartApp, receiver: Receiver
) -> None:
    client = await start_app()
    await stop_dispatcher(client)
    account = await new_account(client)
    await create_webhook(client, account, receiver.url("ok"))
    event_id = await queue_event(client, account.id)
    sessionmaker = client.app[DB_SESSIONMAKER]
    sender = WebhookSender(timeout=1.0, allow_private=True)
    punctual = WebhookDispatcher(sessionmaker, sender=sender, policy=FAST)
    claims, _ = await punctual.claim(1000)
    assert event_id in {c.event_id for c in claims}
    ahead = timedelta(seconds=2 * FAST.lease)  # past the end of the claim, by its own clock
    hasty = WebhookDispatcher(
        sessionmaker, sender=sender, policy=FAST, clock=lambda: utc_now() + ahead
    )

    taken, _ = await hasty.claim(1000)

    assert event_id not in {c.event_id for c in taken}
