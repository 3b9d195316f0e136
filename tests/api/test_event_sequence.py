"""Per-stream sequence numbers of webhook events, on SQLite and PostgreSQL: each event of a stream
gets the next number in the transaction that queues it, the body and the deliveries API carry
it, and two nodes queuing events of one stream at the same time never get the same number."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.database import create_engine
from api.keys import DB_SESSIONMAKER
from api.models import WebhookDelivery
from api.webhooks import outbox
from config import Settings
from tests.api.conftest import AccountCredentials, create_stream
from tests.api.webhook_support import create_webhook, deliveries, stop_dispatcher

HOOK = "https://hooks.example.invalid/"  # .invalid never resolves (RFC 6761)
CONCURRENT = 8


@pytest.fixture
async def quiet(api_client: TestClient) -> TestClient:
    """The app with its dispatcher stopped: the outbox is only written."""
    await stop_dispatcher(api_client)
    return api_client


async def queue_for_stream(
    sessionmaker: async_sessionmaker[AsyncSession],
    account_id: str,
    stream_id: str,
    event_type: str = "livestream.started",
) -> str | None:
    async with sessionmaker() as session, session.begin():
        return await outbox.enqueue(
            session,
            account_id=account_id,
            event_type=event_type,
            data={"id": stream_id},
            stream_id=stream_id,
        )


async def sequences(
    sessionmaker: async_sessionmaker[AsyncSession], event_ids: list[str | None]
) -> dict[str, int]:
    """The ``sequence`` in the body of each of ``event_ids``, checked against the column."""
    query = select(WebhookDelivery).where(WebhookDelivery.event_id.in_(event_ids))
    async with sessionmaker() as session:
        rows = list((await session.execute(query)).scalars())
    found = {}
    for row in rows:
        body = json.loads(row.payload)
        assert list(body) == ["id", "type", "createdAt", "sequence", "data"]
        assert body["sequence"] == row.sequence
        found[row.event_id] = row.sequence
    return found


async def test_the_events_of_a_stream_are_numbered_from_one(
    quiet: TestClient, account: AccountCredentials
) -> None:
    webhook = await create_webhook(quiet, account, HOOK)
    streams = [(await create_stream(quiet, account))["id"] for _ in range(2)]
    sessionmaker = quiet.app[DB_SESSIONMAKER]

    first = [await queue_for_stream(sessionmaker, account.id, streams[0]) for _ in range(3)]
    other = await queue_for_stream(sessionmaker, account.id, streams[1], "recording.ready")
    last = await queue_for_stream(sessionmaker, account.id, streams[0], "livestream.ended")

    numbers = await sequences(sessionmaker, [*first, other, last])
    assert [numbers[str(e)] for e in [*first, last]] == [1, 2, 3, 4]
    assert numbers[str(other)] == 1  # each stream counts its own events
    listed = {
        row["eventId"]: row["sequence"] for row in await deliveries(quiet, account, webhook["id"])
    }
    assert listed == numbers


async def test_every_webhook_gets_the_same_number_for_an_event(
    quiet: TestClient, account: AccountCredentials
) -> None:
    for _ in range(2):
        await create_webhook(quiet, account, HOOK)
    stream_id = (await create_stream(quiet, account))["id"]
    sessionmaker = quiet.app[DB_SESSIONMAKER]

    event_id = await queue_for_stream(sessionmaker, account.id, stream_id)

    query = select(WebhookDelivery.sequence).where(WebhookDelivery.event_id == event_id)
    async with sessionmaker() as session:
        assert list((await session.execute(query)).scalars()) == [1, 1]


async def test_an_event_nobody_receives_takes_no_number(
    quiet: TestClient, account: AccountCredentials
) -> None:
    await create_webhook(quiet, account, HOOK, ["recording.*"])
    stream_id = (await create_stream(quiet, account))["id"]
    sessionmaker = quiet.app[DB_SESSIONMAKER]

    assert await queue_for_stream(sessionmaker, account.id, stream_id) is None
    event_id = await queue_for_stream(sessionmaker, account.id, stream_id, "recording.ready")

    assert await sequences(sessionmaker, [event_id]) == {str(event_id): 1}


async def test_two_nodes_queuing_events_of_one_stream_at_once_get_distinct_numbers(
    quiet: TestClient,
    account: AccountCredentials,
    app_settings: Settings,
    database_url: str,
    tmp_path: Path,
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("one node per SQLite database: concurrent nodes share PostgreSQL")
    await create_webhook(quiet, account, HOOK)
    stream_id = (await create_stream(quiet, account))["id"]
    other_engine = create_engine(dataclasses.replace(app_settings, data_dir=tmp_path))
    nodes = [quiet.app[DB_SESSIONMAKER], async_sessionmaker(other_engine, expire_on_commit=False)]
    ready = asyncio.Barrier(CONCURRENT)

    async def queue(n: int) -> str | None:
        async with nodes[n % 2]() as session, session.begin():
            await ready.wait()  # every transaction is open before any takes a number
            return await outbox.enqueue(
                session,
                account_id=account.id,
                event_type="livestream.reconnected",
                data={"n": n},
                stream_id=stream_id,
            )

    try:
        event_ids = await asyncio.gather(*(queue(n) for n in range(CONCURRENT)))
    finally:
        await other_engine.dispose()

    numbers = await sequences(quiet.app[DB_SESSIONMAKER], list(event_ids))
    assert sorted(numbers.values()) == list(range(1, CONCURRENT + 1))
