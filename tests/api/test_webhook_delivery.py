"""Webhook delivery end to end, on SQLite and PostgreSQL: a real aiohttp receiver on a loopback
port gets signed POSTs; failures are retried, given up, or held by one slow receiver only; the
outbox survives a restart and two dispatchers never claim the same delivery."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import text

from api.cluster.clock import clock_of
from api.keys import DB_SESSIONMAKER, METRICS
from api.live.stream_events import DatabaseStreamEvents
from api.models import new_object_id
from api.webhooks.dispatcher import DeliveryPolicy, WebhookDispatcher
from api.webhooks.sender import WebhookSender
from tests.api.conftest import HEX24, TIMESTAMP, create_stream, new_account
from tests.api.webhook_support import (
    FAST,
    Receiver,
    StartApp,
    create_webhook,
    deliveries,
    docs_verifier,
    hook_client,
    hook_settings,
    keyless,
    queue_event,
    receiver,
    start_app,
    stop_dispatcher,
)
from tests.fakes import FakeClock
from tests.polling import eventually
from workers.events import SessionInfo

__all__ = ["hook_client", "hook_settings", "receiver", "start_app"]  # fixtures


def counted(client: TestClient, result: str) -> float:
    """Attempts with ``result`` counted in the app's metrics."""
    return client.app[METRICS].webhook_deliveries.labels(result)._value.get()  # type: ignore[no-any-return]


async def test_a_signed_event_reaches_a_real_receiver(
    hook_client: TestClient, receiver: Receiver
) -> None:
    account = await new_account(hook_client)
    webhook = await create_webhook(hook_client, account, receiver.url("ok"), ["livestream.*"])
    data = {"id": "s1", "name": "zujo", "nested": {"é": [1, None]}}

    event_id = await queue_event(hook_client, account.id, "livestream.ended", data)
    got = await receiver.next()

    verify = docs_verifier()
    header = got.headers["Liverelay-Signature"]
    assert verify(webhook["secret"], header, got.body)
    assert not verify(webhook["secret"], header, got.body + b" ")
    assert not verify("whsec_other", header, got.body)
    assert not verify(webhook["secret"], header, got.body, now=time.time() + 301)
    assert not verify(webhook["secret"], "t=1,v2=00", got.body)
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"].startswith("liverelay-webhooks/")
    event = json.loads(got.body)
    assert set(event) == {"id", "type", "createdAt", "data"}
    assert (event["id"], event["type"], event["data"]) == (event_id, "livestream.ended", data)
    assert TIMESTAMP.match(event["createdAt"])
    assert got.headers["Liverelay-Event-Id"] == event_id
    assert got.headers["Liverelay-Event-Type"] == "livestream.ended"

    async def delivered() -> bool:
        rows = await deliveries(hook_client, account, webhook["id"])
        return rows[0]["status"] == "delivered"

    await eventually(delivered)
    [row] = await deliveries(hook_client, account, webhook["id"])
    assert (row["eventId"], row["type"]) == (event_id, "livestream.ended")
    assert (row["attempts"], row["lastStatusCode"], row["lastError"]) == (1, 204, None)
    assert TIMESTAMP.match(row["deliveredAt"]) and row["nextAttemptAt"] is None
    assert counted(hook_client, "delivered") == 1


async def test_a_failed_attempt_is_retried_with_the_same_event(
    hook_client: TestClient, receiver: Receiver
) -> None:
    account = await new_account(hook_client)
    webhook = await create_webhook(hook_client, account, receiver.url("flaky"))
    event_id = await queue_event(hook_client, account.id)

    first, second = await receiver.next(), await receiver.next()

    assert first.body == second.body and json.loads(first.body)["id"] == event_id
    assert second.at - first.at >= FAST.backoff_base * 0.9

    async def delivered() -> bool:
        rows = await deliveries(hook_client, account, webhook["id"])
        return rows[0]["status"] == "delivered"

    await eventually(delivered)
    [row] = await deliveries(hook_client, account, webhook["id"])
    assert (row["attempts"], row["lastStatusCode"], row["lastError"]) == (2, 200, None)
    # (The shared test database may hold other tests' pending deliveries: at least ours.)
    assert counted(hook_client, "retry") >= 1 and counted(hook_client, "delivered") == 1


async def test_a_retry_is_sent_when_it_falls_due_not_at_the_next_poll(
    start_app: StartApp, receiver: Receiver
) -> None:
    # Polls 60 s apart: the retry 0.3 s after the failure must come from the dispatcher
    # sleeping until the next pending delivery falls due.
    policy = {**vars(FAST), "poll_interval": 60.0, "backoff_base": 0.3, "backoff_cap": 0.3}
    client = await start_app(DeliveryPolicy(**policy))
    account = await new_account(client)
    await create_webhook(client, account, receiver.url("flaky"))
    await queue_event(client, account.id)

    first = await receiver.next()
    second = await receiver.next(timeout=10)
    assert first.body == second.body
    assert second.at - first.at >= 0.3 * 0.9


async def test_a_delivery_fails_once_the_retry_period_is_over(
    start_app: StartApp, receiver: Receiver
) -> None:
    # The app's dispatcher is stopped; this one judges attempts on a clock the test moves, so
    # the retry period runs out between the first attempt and the second, however slow the
    # machine. Claims go by the database's clock: the retry (30 s on) is made due in the table.
    policy = DeliveryPolicy(
        **{**vars(FAST), "give_up_after": 60.0, "backoff_base": 30.0, "backoff_cap": 3600.0}
    )
    client = await start_app(policy)
    await stop_dispatcher(client)
    account = await new_account(client)
    webhook = await create_webhook(client, account, receiver.url("fail"))
    await queue_event(client, account.id)
    clock = FakeClock(time.time())  # not before the event was queued: it is due
    dispatcher = WebhookDispatcher(
        client.app[DB_SESSIONMAKER],
        sender=WebhookSender(timeout=1.0, allow_private=True),
        policy=policy,
        results=client.app[METRICS].webhook_deliveries,
        clock=lambda: datetime.fromtimestamp(clock(), UTC),
    )

    async def row() -> dict[str, Any]:
        [only] = await deliveries(client, account, webhook["id"])
        return only

    await dispatcher.start()
    try:
        first = await eventually(lambda: recorded(row, attempts=1))
        assert first["status"] == "pending" and first["nextAttemptAt"] is not None
        # The retry falls due; the one after it would come later than 60 s after the event.
        clock.advance(59.95)
        await due_now(client, first["id"])
        dispatcher.wake()
        last = await eventually(lambda: recorded(row, attempts=2))
    finally:
        await dispatcher.close()
    assert last["status"] == "failed"
    assert last["attempts"] == 2 == len(receiver.on("fail"))
    assert (last["lastStatusCode"], last["lastError"]) == (500, "answered HTTP 500")
    assert last["nextAttemptAt"] is None and last["deliveredAt"] is None
    assert counted(client, "failed") >= 1


async def due_now(client: TestClient, delivery_id: str) -> None:
    """Make delivery ``delivery_id`` due a second ago, by the database's clock."""
    async with client.app[DB_SESSIONMAKER]() as session, session.begin():
        clock = clock_of(session)
        result = await session.execute(
            text(
                f"UPDATE webhook_deliveries SET next_attempt_at = {clock.plus('s')} WHERE id = :id"
            ),
            {"s": -1.0, "id": delivery_id},
        )
        assert result.rowcount == 1  # type: ignore[attr-defined]


async def recorded(
    row: Callable[[], Awaitable[dict[str, Any]]], *, attempts: int
) -> dict[str, Any] | None:
    """The delivery once its ``attempts``-th attempt is recorded, else None."""
    current = await row()
    return current if current["attempts"] >= attempts else None


async def test_a_receiver_that_never_answers_holds_up_nothing_else(
    hook_client: TestClient, receiver: Receiver
) -> None:
    account = await new_account(hook_client)
    slow = await create_webhook(hook_client, account, receiver.url("hang"))
    fast = await create_webhook(hook_client, account, receiver.url("ok"))
    await queue_event(hook_client, account.id)

    arrivals = {(await receiver.next()).path, (await receiver.next()).path}
    assert arrivals == {"/hang", "/ok"}
    assert not receiver.release.is_set()  # /hang has not answered, /ok was delivered anyway
    assert (await hook_client.get("/healthz")).status == 200

    async def fast_delivered_slow_timed_out() -> bool:
        [ok] = await deliveries(hook_client, account, fast["id"])
        [hang] = await deliveries(hook_client, account, slow["id"])
        return ok["status"] == "delivered" and hang["attempts"] >= 1

    await eventually(fast_delivered_slow_timed_out)
    [hang] = await deliveries(hook_client, account, slow["id"])
    assert hang["status"] == "pending" and hang["lastStatusCode"] is None
    assert hang["lastError"] == f"no answer within {FAST.timeout:g} s"


async def test_pending_deliveries_survive_a_restart(
    start_app: StartApp, receiver: Receiver
) -> None:
    first = await start_app()
    account = await new_account(first)
    webhook = await create_webhook(first, account, receiver.url("ok"))
    await stop_dispatcher(first)  # as if the process died before sending
    event_id = await queue_event(first, account.id)
    await first.close()
    assert receiver.received == []

    second = await start_app()
    got = await receiver.next()

    assert json.loads(got.body)["id"] == event_id

    async def delivered() -> bool:
        rows = await deliveries(second, account, webhook["id"])
        return rows[0]["status"] == "delivered"

    await eventually(delivered)


async def test_two_dispatchers_never_claim_the_same_delivery(
    hook_client: TestClient, receiver: Receiver
) -> None:
    await stop_dispatcher(hook_client)
    account = await new_account(hook_client)
    await create_webhook(hook_client, account, receiver.url("ok"))
    queued = {await queue_event(hook_client, account.id) for _ in range(5)}
    sessionmaker = hook_client.app[DB_SESSIONMAKER]
    sender = WebhookSender(timeout=1.0, allow_private=True)
    nodes = [WebhookDispatcher(sessionmaker, sender=sender, policy=FAST) for _ in range(2)]

    one, _ = await nodes[0].claim(1000)
    other, _ = await nodes[1].claim(1000)
    again, _ = await nodes[0].claim(1000)

    # (The shared test database may hold other tests' deliveries: only ours are counted.)
    mine, theirs = ({c.event_id for c in claims} & queued for claims in (one, other))
    assert len(mine) == len(theirs) == 2  # each node sends at most two of a webhook at once
    assert not mine & theirs  # and never what the other node leased
    assert not {c.event_id for c in again} & queued  # the first node's two are still in flight


async def test_a_session_start_arrives_with_the_stream_as_the_api_shows_it(
    hook_client: TestClient, receiver: Receiver
) -> None:
    account = await new_account(hook_client)
    stream = await create_stream(hook_client, account)
    await create_webhook(hook_client, account, receiver.url("ok"), ["livestream.started"])
    info = SessionInfo(stream["id"], new_object_id(), time.time(), "203.0.113.7:50000")

    await DatabaseStreamEvents.for_app(hook_client.app).session_started(info)
    event = json.loads((await receiver.next()).body)

    assert event["type"] == "livestream.started" and HEX24.match(event["id"])
    path = f"/v1/livestreams/{stream['id']}"
    current = await (await hook_client.get(path, headers=account.headers)).json()
    assert {k: v for k, v in event["data"].items() if k != "session"} == keyless(current)
    assert event["data"]["session"]["id"] == info.session_id
