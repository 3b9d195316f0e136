"""Retention on SQLite and PostgreSQL: old deliveries and ended sessions are pruned, nothing
newer, pending or live is; rows are made old directly in the database (no waiting)."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta

from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient
from sqlalchemy import select, update

from api.app import create_app
from api.jobs.retention import prune_older_than
from api.keys import DB_SESSIONMAKER, RETENTION
from api.live.stream_events import DatabaseStreamEvents
from api.models import LiveSession, Recording, WebhookDelivery, new_object_id, utc_now
from config import Settings
from tests.api.conftest import AccountCredentials, create_stream
from tests.api.recording_support import T0, add_recording
from tests.api.webhook_support import create_webhook, queue_event, stop_dispatcher
from tests.polling import eventually
from workers.events import SessionInfo

HOOK = "https://hooks.example.invalid/"


async def _deliveries(client: TestClient, webhook_id: str) -> dict[str, WebhookDelivery]:
    async with client.app[DB_SESSIONMAKER]() as session:
        query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
        return {row.id: row for row in (await session.execute(query)).scalars()}


async def _age_deliveries(client: TestClient, ids: list[str], days: int, status: str) -> None:
    async with client.app[DB_SESSIONMAKER]() as session, session.begin():
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(ids))
            .values(created_at=utc_now() - timedelta(days=days), status=status)
        )


async def _session(client: TestClient, stream_id: str, *, ended_days_ago: int | None) -> str:
    """A session row of ``stream_id`` started 40 days ago; ended ``ended_days_ago`` (or live)."""
    events = DatabaseStreamEvents.for_app(client.app)
    started = time.time() - 40 * 86400
    info = SessionInfo(stream_id, new_object_id(), started, "203.0.113.7:50000")
    if ended_days_ago is None:
        await events.session_started(info)
    else:
        ended = time.time() - ended_days_ago * 86400
        await events.session_ended(info, ended_at=ended, reason="publisher_left", bytes_in=1)
    return info.session_id


async def _session_ids(client: TestClient, stream_id: str) -> set[str]:
    async with client.app[DB_SESSIONMAKER]() as session:
        query = select(LiveSession.id).where(LiveSession.live_stream_id == stream_id)
        return set((await session.execute(query)).scalars())


async def test_old_deliveries_and_ended_sessions_are_pruned(
    api_client: TestClient, account: AccountCredentials
) -> None:
    await stop_dispatcher(api_client)
    stream = await create_stream(api_client, account, record=True)
    recording = await add_recording(api_client, stream["id"], started=T0)
    old_ended = await _session(api_client, stream["id"], ended_days_ago=31)
    recent = await _session(api_client, stream["id"], ended_days_ago=29)
    live = await _session(api_client, stream["id"], ended_days_ago=None)
    webhook = await create_webhook(api_client, account, HOOK)
    for _ in range(5):
        await queue_event(api_client, account.id)
    old_done, old_failed, old_pending, new_done, new_pending = list(
        await _deliveries(api_client, webhook["id"])
    )
    await _age_deliveries(api_client, [old_done], 31, "delivered")
    await _age_deliveries(api_client, [old_failed], 45, "failed")
    await _age_deliveries(api_client, [old_pending], 31, "pending")
    await _age_deliveries(api_client, [new_done], 29, "delivered")

    pruned = await prune_older_than(api_client.app[DB_SESSIONMAKER], timedelta(days=30))

    assert pruned.deliveries >= 2 and pruned.sessions >= 1
    kept = await _deliveries(api_client, webhook["id"])
    assert set(kept) == {old_pending, new_done, new_pending}
    assert await _session_ids(api_client, stream["id"]) == {recent, live}
    assert old_ended not in await _session_ids(api_client, stream["id"])
    async with api_client.app[DB_SESSIONMAKER]() as session:
        assert await session.get(Recording, recording) is not None


async def test_a_started_app_prunes_with_its_retention_setting(
    api_client: TestClient,
    account: AccountCredentials,
    aiohttp_client: AiohttpClient,
    app_settings: Settings,
) -> None:
    await stop_dispatcher(api_client)
    webhook = await create_webhook(api_client, account, HOOK)
    await queue_event(api_client, account.id)
    await queue_event(api_client, account.id)
    old, new = list(await _deliveries(api_client, webhook["id"]))
    await _age_deliveries(api_client, [old], 8, "delivered")
    await _age_deliveries(api_client, [new], 6, "delivered")

    settings = dataclasses.replace(app_settings, retention_days=7)
    node = await aiohttp_client(create_app(settings))  # a second node on the same database

    await eventually(lambda: node.app[RETENTION].passes >= 1)
    assert set(await _deliveries(api_client, webhook["id"])) == {new}


async def test_deleting_a_webhook_deletes_its_deliveries(
    api_client: TestClient, account: AccountCredentials
) -> None:
    await stop_dispatcher(api_client)
    webhook = await create_webhook(api_client, account, HOOK)
    other = await create_webhook(api_client, account, HOOK)
    await queue_event(api_client, account.id)
    assert len(await _deliveries(api_client, webhook["id"])) == 1

    response = await api_client.delete(f"/v1/webhooks/{webhook['id']}", headers=account.headers)

    assert response.status == 200
    assert await _deliveries(api_client, webhook["id"]) == {}
    assert len(await _deliveries(api_client, other["id"])) == 1
