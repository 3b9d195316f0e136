"""The outbox on SQLite and PostgreSQL: which webhooks an event goes to, and the exact body."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from api.keys import DB_SESSIONMAKER
from api.models import WebhookDelivery
from tests.api.conftest import HEX24, TIMESTAMP, MakeAccount
from tests.api.webhook_support import create_webhook, queue_event, stop_dispatcher

HOOK = "https://hooks.example.invalid/"  # .invalid never resolves (RFC 6761)


async def rows_of(client: TestClient, event_id: str | None) -> list[WebhookDelivery]:
    async with client.app[DB_SESSIONMAKER]() as session:
        query = select(WebhookDelivery).where(WebhookDelivery.event_id == event_id)
        return list((await session.execute(query)).scalars())


async def test_an_event_goes_to_every_matching_webhook_of_its_account(
    api_client: TestClient, make_account: MakeAccount
) -> None:
    await stop_dispatcher(api_client)
    owner, other = await make_account("A"), await make_account("B")
    hooks = {
        name: (await create_webhook(api_client, owner, HOOK + name, events))["id"]
        for name, events in {
            "all": ["*"],
            "family": ["livestream.*"],
            "exact": ["recording.ready"],
            "restream": ["restream.*"],
            "mixed": ["recording.failed", "livestream.ended"],
        }.items()
    }
    deleted = await create_webhook(api_client, owner, HOOK + "deleted")
    await api_client.delete(f"/v1/webhooks/{deleted['id']}", headers=owner.headers)
    await create_webhook(api_client, other, HOOK + "other")

    expected = {
        "livestream.started": {"all", "family"},
        "livestream.ended": {"all", "family", "mixed"},
        "recording.ready": {"all", "exact"},
        "recording.failed": {"all", "mixed"},
        "restream.connected": {"all", "restream"},
    }
    for event_type, names in expected.items():
        event_id = await queue_event(api_client, owner.id, event_type, {"x": 1})
        rows = await rows_of(api_client, event_id)
        assert {r.webhook_id for r in rows} == {hooks[n] for n in names}, event_type
        assert {(r.event_type, r.status, r.attempts) for r in rows} == {(event_type, "pending", 0)}


async def test_the_body_is_the_exact_json_sent(
    api_client: TestClient, make_account: MakeAccount
) -> None:
    await stop_dispatcher(api_client)
    account = await make_account()
    for n in range(2):
        await create_webhook(api_client, account, f"{HOOK}{n}")
    data = {"id": "s", "nested": {"é": [1, None]}}

    event_id = await queue_event(api_client, account.id, "recording.ready", data)

    first, second = await rows_of(api_client, event_id)
    assert event_id is not None and HEX24.match(event_id)
    assert first.payload == second.payload and first.id != second.id
    body = json.loads(first.payload)
    assert list(body) == ["id", "type", "createdAt", "data"]
    assert (body["id"], body["type"], body["data"]) == (event_id, "recording.ready", data)
    assert TIMESTAMP.match(body["createdAt"])
    assert first.payload == json.dumps(body, separators=(",", ":"))


async def test_nothing_is_queued_without_a_subscriber(
    api_client: TestClient, make_account: MakeAccount
) -> None:
    await stop_dispatcher(api_client)
    account = await make_account()
    await create_webhook(api_client, account, HOOK, ["recording.*"])

    assert await queue_event(api_client, account.id, "livestream.started") is None
    with pytest.raises(ValueError, match=r"unknown webhook event type 'livestream\.nope'"):
        await queue_event(api_client, account.id, "livestream.nope")
