"""Session bookkeeping and the events it queues, on SQLite and PostgreSQL: each change and its
outbox rows commit together, nothing raises into the media path, and the event data is the
stream (and recording) exactly as the API returns it."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from api.keys import DB_SESSIONMAKER
from api.live.recording_store import DatabaseRecordingStore
from api.live.stream_events import DatabaseStreamEvents
from api.live.stream_view import StreamView
from api.models import LiveSession, Recording, Webhook, WebhookDelivery, new_object_id
from api.webhooks import outbox
from config import Settings
from tests.api.conftest import (
    TARGET,
    AccountCredentials,
    PoolWaits,
    create_stream,
    holding_its_connection,
    one_connection_engine,
)
from tests.api.webhook_support import create_webhook, keyless, stop_dispatcher
from tests.polling import eventually
from workers.events import SessionInfo
from workers.recording import RecordingSummary

HOOK = "https://hooks.example.invalid/"  # .invalid never resolves (RFC 6761)


@pytest.fixture
async def quiet(api_client: TestClient) -> TestClient:
    """The app with its dispatcher stopped: the outbox is only written."""
    await stop_dispatcher(api_client)
    return api_client


async def queued(client: TestClient, account_id: str) -> list[dict[str, Any]]:
    """The event bodies queued for ``account_id``'s webhooks, oldest first."""
    query = (
        select(WebhookDelivery.payload)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(Webhook.account_id == account_id)
        .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
    )
    async with client.app[DB_SESSIONMAKER]() as session:
        return [json.loads(p) for p in (await session.execute(query)).scalars()]


async def session_row(client: TestClient, session_id: str) -> LiveSession | None:
    async with client.app[DB_SESSIONMAKER]() as session:
        return await session.get(LiveSession, session_id)


async def get_json(client: TestClient, account: AccountCredentials, path: str) -> Any:
    response = await client.get(path, headers=account.headers)
    assert response.status == 200, await response.text()
    return await response.json()


def without(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in keys}


async def test_a_session_is_recorded_with_its_events(
    quiet: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(quiet, account)
    await create_webhook(quiet, account, HOOK, ["livestream.*"])
    events = DatabaseStreamEvents.for_app(quiet.app)
    info = SessionInfo(stream["id"], new_object_id(), time.time() - 60, "203.0.113.7:50000")

    await events.session_started(info)
    await events.session_reconnected(info, "203.0.113.7:50001")
    await events.session_ended(info, ended_at=time.time(), reason="publisher_left", bytes_in=1234)

    row = await session_row(quiet, info.session_id)
    assert row is not None and row.live_stream_id == stream["id"]
    assert (row.reconnects, row.end_reason, row.bytes_in) == (1, "publisher_left", 1234)
    assert row.client_address == "203.0.113.7:50000" and row.ended_at is not None
    bodies = await queued(quiet, account.id)
    types = ["livestream.started", "livestream.reconnected", "livestream.ended"]
    assert [b["type"] for b in bodies] == types
    assert len({b["id"] for b in bodies}) == 3
    current = await get_json(quiet, account, f"/v1/livestreams/{stream['id']}")
    for body in bodies:
        assert without(body["data"], "session") == keyless(current)
        assert body["data"]["session"]["id"] == info.session_id
    assert [b["data"]["session"]["reconnects"] for b in bodies] == [0, 1, 1]
    ended = bodies[-1]["data"]["session"]
    assert (ended["endReason"], ended["bytesIn"], bodies[-1]["data"]["status"]) == (
        "publisher_left",
        1234,
        "idle",
    )


class BrokenView(StreamView):
    """Renders nothing: the queueing step of a change fails."""

    def session_event(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("rendering failed")


async def test_the_change_and_its_event_commit_together(
    quiet: TestClient, account: AccountCredentials, caplog: pytest.LogCaptureFixture
) -> None:
    stream = await create_stream(quiet, account)
    await create_webhook(quiet, account, HOOK)
    events = DatabaseStreamEvents(quiet.app[DB_SESSIONMAKER], BrokenView(quiet.app))
    info = SessionInfo(stream["id"], new_object_id(), time.time(), "203.0.113.7:50000")

    with caplog.at_level(logging.WARNING, logger="api.live.stream_events"):
        await events.session_started(info)  # does not raise

    assert await session_row(quiet, info.session_id) is None
    assert await queued(quiet, account.id) == []
    assert f"livestream.started of session {info.session_id} not recorded" in caplog.text


async def test_a_database_that_is_away_never_reaches_the_media_path(
    quiet: TestClient, account: AccountCredentials, caplog: pytest.LogCaptureFixture
) -> None:
    stream = await create_stream(quiet, account)
    engine = create_async_engine("postgresql+asyncpg://postgres:hunter2@127.0.0.1:1/gone")
    events = DatabaseStreamEvents(async_sessionmaker(engine), StreamView(quiet.app), timeout=5.0)
    info = SessionInfo(stream["id"], new_object_id(), time.time(), "203.0.113.7:50000")

    with caplog.at_level(logging.WARNING, logger="api.live.stream_events"):
        await events.session_started(info)
        await events.session_ended(info, ended_at=time.time(), reason="error", bytes_in=0)
    await engine.dispose()

    assert caplog.text.count("not recorded") == 2
    assert "hunter2" not in caplog.text and stream["streamKey"] not in caplog.text


async def test_a_busy_pool_delays_a_session_event_rather_than_dropping_it(
    quiet: TestClient, account: AccountCredentials, app_settings: Settings
) -> None:
    # One pooled connection, held past the pool's own wait: the start is recorded once it is
    # free, with its event (many encoders starting at once keep every connection busy).
    stream = await create_stream(quiet, account)
    await create_webhook(quiet, account, HOOK, ["livestream.*"])
    async with one_connection_engine(app_settings, pool_timeout=0.2) as engine:
        waits = PoolWaits(engine)
        events = DatabaseStreamEvents(waits.sessionmaker, StreamView(quiet.app), timeout=10.0)
        info = SessionInfo(stream["id"], new_object_id(), time.time(), "203.0.113.7:50000")
        async with holding_its_connection(engine):
            start = asyncio.create_task(events.session_started(info))
            await eventually(lambda: waits.count >= 3)  # three pool waits have run out
            assert not start.done()
        await asyncio.wait_for(start, 10)
    assert await session_row(quiet, info.session_id) is not None
    assert [b["type"] for b in await queued(quiet, account.id)] == ["livestream.started"]


async def test_an_end_without_a_recorded_start_still_keeps_the_session(
    quiet: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(quiet, account)
    events = DatabaseStreamEvents.for_app(quiet.app)
    info = SessionInfo(stream["id"], new_object_id(), time.time() - 5, "203.0.113.7:50000")

    await events.session_ended(info, ended_at=time.time(), reason="deleted", bytes_in=9)

    row = await session_row(quiet, info.session_id)
    assert row is not None and (row.end_reason, row.bytes_in, row.reconnects) == ("deleted", 9, 0)


async def test_restream_changes_are_queued_with_their_target(
    quiet: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(quiet, account, restream=[TARGET])
    target_id = stream["restream"][0]["_id"]
    await create_webhook(quiet, account, HOOK, ["restream.*"])
    events = DatabaseStreamEvents.for_app(quiet.app)
    info = SessionInfo(stream["id"], new_object_id(), time.time(), "203.0.113.7:50000")

    await events.restream_changed(info, target_id=target_id, state="connected", last_error=None)
    await events.restream_changed(info, target_id=target_id, state="failed", last_error="refused")
    await events.restream_changed(info, target_id=new_object_id(), state="failed", last_error="x")

    connected, failed = await queued(quiet, account.id)
    assert (connected["type"], failed["type"]) == ("restream.connected", "restream.failed")
    assert connected["data"]["target"]["status"] == "live"
    target = failed["data"]["target"]
    assert (target["_id"], target["url"]) == (target_id, TARGET["url"])
    assert (target["status"], target["lastError"]) == ("failed", "refused")
    assert failed["data"]["restream"] == [target]
    assert failed["data"]["session"]["id"] == info.session_id


async def test_a_finished_recording_queues_its_event(
    quiet: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(quiet, account, record=True)
    await create_webhook(quiet, account, HOOK, ["recording.*"])
    store = DatabaseRecordingStore(quiet.app[DB_SESSIONMAKER], StreamView(quiet.app))
    started = time.time() - 10
    ids = [await store.recording_started(stream["id"], started) for _ in range(2)]

    ready = RecordingSummary(ids[0], stream["id"], "ready", started, time.time(), 8.0, 4096, 4)
    await store.recording_finished(ready)
    await store.recording_finished(
        RecordingSummary(ids[1], stream["id"], "failed", started, time.time(), error="no media")
    )

    first, second = await queued(quiet, account.id)
    assert (first["type"], second["type"]) == ("recording.ready", "recording.failed")
    listing = await get_json(quiet, account, f"/v1/livestreams/{stream['id']}/recordings")
    by_id = {r["id"]: r for r in listing["data"]}
    assert first["data"]["recording"] == by_id[ids[0]]
    assert second["data"]["recording"] == by_id[ids[1]]
    current = await get_json(quiet, account, f"/v1/livestreams/{stream['id']}")
    assert without(first["data"], "recording") == keyless(current)


async def test_a_recording_store_without_a_view_queues_nothing(
    quiet: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(quiet, account, record=True)
    await create_webhook(quiet, account, HOOK)
    store = DatabaseRecordingStore(quiet.app[DB_SESSIONMAKER])
    recording_id = await store.recording_started(stream["id"], time.time())

    await store.recording_finished(
        RecordingSummary(recording_id, stream["id"], "ready", time.time(), time.time())
    )

    assert await queued(quiet, account.id) == []
    async with quiet.app[DB_SESSIONMAKER]() as session:
        row = await session.get(Recording, recording_id)
    assert row is not None and row.status == "ready"


async def test_sessions_a_crash_left_open_are_closed_at_start(
    quiet: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(quiet, account)
    await create_webhook(quiet, account, HOOK, ["livestream.ended"])
    events = DatabaseStreamEvents.for_app(quiet.app)
    info = SessionInfo(stream["id"], new_object_id(), time.time() - 60, "203.0.113.9:4000")
    await events.session_started(info)  # ... and the process died: no session_ended

    assert stream["id"] in await events.streams_left_open()
    assert await events.close_left_open(stream["id"], 1) == 1
    row = await session_row(quiet, info.session_id)
    assert row is not None and row.ended_at is not None and row.end_reason == "error"
    bodies = await queued(quiet, account.id)
    assert [b["type"] for b in bodies] == ["livestream.ended"]
    assert bodies[0]["data"]["session"]["id"] == info.session_id
    assert await events.close_left_open(stream["id"], 1) == 0  # nothing left open
    assert stream["id"] not in await events.streams_left_open()


async def test_event_payloads_carry_no_stream_or_restream_keys(
    quiet: TestClient, account: AccountCredentials
) -> None:
    second = {"url": "rtmps://live.example.com/app", "streamKey": "sk_live_9f8e7d6c5b4a"}
    stream = await create_stream(quiet, account, record=True, restream=[TARGET, second])
    target_id = stream["restream"][0]["_id"]
    await create_webhook(quiet, account, HOOK, ["*"])
    events = DatabaseStreamEvents.for_app(quiet.app)
    store = DatabaseRecordingStore(quiet.app[DB_SESSIONMAKER], StreamView(quiet.app))
    info = SessionInfo(stream["id"], new_object_id(), time.time() - 60, "203.0.113.7:50000")

    await events.session_started(info)
    await events.session_reconnected(info, "203.0.113.7:50001")
    await events.restream_changed(info, target_id=target_id, state="connected", last_error=None)
    await events.restream_changed(info, target_id=target_id, state="failed", last_error="refused")
    for status in ("ready", "failed"):
        rid = await store.recording_started(stream["id"], info.started_at)
        await store.recording_finished(
            RecordingSummary(rid, stream["id"], status, info.started_at, time.time())  # type: ignore[arg-type]
        )
    await events.session_ended(info, ended_at=time.time(), reason="deleted", bytes_in=9)

    bodies = await queued(quiet, account.id)
    assert {b["type"] for b in bodies} == set(outbox.EVENT_TYPES)
    secrets = (stream["streamKey"], TARGET["streamKey"], second["streamKey"])
    for body in bodies:
        text = json.dumps(body)
        leaked = [secret for secret in secrets if secret in text]
        assert leaked == [], f"{body['type']} payload holds {leaked}"
        data = body["data"]
        assert "streamKey" not in data and "upstreamUrl" not in data
        assert data["id"] == stream["id"] and data["streamUrl"] == stream["streamUrl"]
        assert [t["_id"] for t in data["restream"]] == [t["_id"] for t in stream["restream"]]
        assert [t["url"] for t in data["restream"]] == [TARGET["url"], second["url"]]
    [failed] = [b for b in bodies if b["type"] == "restream.failed"]
    assert failed["data"]["target"]["_id"] == target_id
    assert "streamKey" not in failed["data"]["target"]
