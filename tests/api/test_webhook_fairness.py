"""Delivery fairness end to end, on SQLite and PostgreSQL: one account's dead receivers and
flapping streams never hold the delivery slots every other account needs."""

from __future__ import annotations

import json
import time
from datetime import datetime

from aiohttp.test_utils import TestClient

from api.live.stream_events import DatabaseStreamEvents
from api.models import new_object_id
from api.webhooks.claims import HELD_BACK_TOO_LONG
from api.webhooks.dispatcher import DeliveryPolicy
from tests.api.conftest import create_stream, new_account
from tests.api.webhook_support import (
    FAST,
    Blackhole,
    Receiver,
    StartApp,
    blackhole,
    create_webhook,
    deliveries,
    hook_settings,
    queue_event,
    receiver,
    start_app,
)
from tests.polling import eventually
from workers.events import SessionInfo

__all__ = ["blackhole", "hook_settings", "receiver", "start_app"]  # fixtures

FLAPS = 3
"""Times account A's stream starts and ends (each time an event per webhook)."""


async def flap(client: TestClient, stream_id: str, times: int) -> None:
    """Start and end a session of ``stream_id`` ``times`` times, through the same events the
    media path reports a publisher coming and going with."""
    events = DatabaseStreamEvents.for_app(client.app)
    for _ in range(times):
        info = SessionInfo(stream_id, new_object_id(), time.time(), "203.0.113.7:50000")
        await events.session_started(info)
        await events.session_ended(info, ended_at=time.time(), reason="publisher_left", bytes_in=0)


async def test_one_accounts_blackholes_leave_slots_for_another_account(
    start_app: StartApp, receiver: Receiver, blackhole: Blackhole
) -> None:
    # A POST to the blackhole is given up after 5 s: long enough that A's first attempts are
    # all still waiting when B's event is queued, on a loaded machine too.
    client = await start_app(DeliveryPolicy(**{**vars(FAST), "timeout": 5.0}))
    noisy = await new_account(client, "Noisy")
    for n in range(20):  # the most webhooks an account may have
        await create_webhook(client, noisy, f"{blackhole.url}/hook{n}")
    await flap(client, (await create_stream(client, noisy))["id"], FLAPS)
    half = DeliveryPolicy().concurrency // 2
    await eventually(lambda: blackhole.waiting >= half)  # A's deliveries are in flight

    quiet = await new_account(client, "Quiet")
    await create_webhook(client, quiet, receiver.url("ok"), ["livestream.started"])
    stream = await create_stream(client, quiet)
    info = SessionInfo(stream["id"], new_object_id(), time.time(), "198.51.100.4:50000")
    await DatabaseStreamEvents.for_app(client.app).session_started(info)
    # Either B's event arrives, or one of A's POSTs gave up first (it was waiting for a slot).
    await eventually(lambda: bool(receiver.received) or blackhole.closed > 0, within=30)

    assert blackhole.closed == 0, (
        f"B's event waited until {blackhole.closed} of A's {blackhole.accepted} POSTs to the "
        "blackhole timed out"
    )
    [got] = receiver.received
    assert json.loads(got.body)["data"]["id"] == stream["id"]
    assert half <= blackhole.waiting == blackhole.accepted  # A's POSTs are all still waiting


def seconds_between(start: str, end: str) -> float:
    """Seconds from API timestamp ``start`` to ``end``."""
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


async def test_a_webhook_that_keeps_failing_waits_for_its_breaker_without_a_slot(
    start_app: StartApp, blackhole: Blackhole
) -> None:
    # Two failures in a row open the breaker; its probe then waits 60 s (twice the 30 s backoff
    # base), longer than a retry (30 s) or a lease (30.3 s), so held-back rows are told apart.
    policy = {**vars(FAST), "timeout": 0.3, "backoff_base": 30.0, "backoff_cap": 3600.0}
    client = await start_app(DeliveryPolicy(**{**policy, "breaker_threshold": 2}))
    account = await new_account(client)
    webhook = await create_webhook(client, account, f"{blackhole.url}/dead")
    for _ in range(6):
        await queue_event(client, account.id)

    async def tripped() -> bool:
        rows = await deliveries(client, account, webhook["id"])
        held = [r for r in rows if r["attempts"] == 0]
        return (
            blackhole.waiting == 0
            and len(rows) - len(held) >= 2
            and bool(held)
            and all(seconds_between(r["createdAt"], r["nextAttemptAt"]) > 45 for r in held)
        )

    await eventually(tripped)
    rows = await deliveries(client, account, webhook["id"])
    attempted = [r for r in rows if r["attempts"] > 0]
    held = [r for r in rows if r["attempts"] == 0]
    assert blackhole.accepted == len(attempted) < 6  # the held-back rows were never sent
    assert {r["lastError"] for r in attempted} == {"no answer within 0.3 s"}
    assert len({r["nextAttemptAt"] for r in held}) == 1  # all wait for the one probe
    assert {r["status"] for r in rows} == {"pending"}


async def test_a_delivery_held_back_past_its_retry_period_fails_with_the_reason(
    start_app: StartApp, blackhole: Blackhole
) -> None:
    # The breaker's probe (60 s away) would come after the 10 s retry period of every row.
    policy = {**vars(FAST), "timeout": 0.3, "backoff_base": 30.0, "backoff_cap": 3600.0}
    client = await start_app(
        DeliveryPolicy(**{**policy, "breaker_threshold": 2, "give_up_after": 10.0})
    )
    account = await new_account(client)
    webhook = await create_webhook(client, account, f"{blackhole.url}/dead")
    for _ in range(6):
        await queue_event(client, account.id)

    async def all_failed() -> bool:
        rows = await deliveries(client, account, webhook["id"])
        return {r["status"] for r in rows} == {"failed"}

    await eventually(all_failed)
    rows = await deliveries(client, account, webhook["id"])
    held = [r for r in rows if r["attempts"] == 0]
    assert held and blackhole.accepted == len(rows) - len(held)
    assert {r["lastError"] for r in held} == {HELD_BACK_TOO_LONG}
