"""Writes carry the generation of the stream's ownership lease, on SQLite and PostgreSQL: a new
owner inside the reconnect window continues the previous owner's session and recording, and
the previous (stale) owner's later writes are refused rather than applied."""

from __future__ import annotations

import time

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from api.cluster.clock import database_now
from api.cluster.leases import StreamLeases
from api.keys import DB_SESSIONMAKER
from api.live.recording_store import DatabaseRecordingStore
from api.live.session_resume import DatabaseSessionResume
from api.live.stream_events import DatabaseStreamEvents
from api.live.stream_view import StreamView
from api.models import LiveSession, Recording, StreamLease, new_object_id
from tests.api.conftest import AccountCredentials, create_stream
from tests.api.webhook_support import stop_dispatcher
from tests.cluster_support import set_column_seconds_ago
from workers.events import SessionInfo
from workers.recording import RecordingSummary

WINDOW = 60.0


class Owners:
    """Node A owned the stream (generation 1) and began a recorded session; node B claims it
    (generation 2) once A's lease expired."""

    def __init__(self, client: TestClient, stream_id: str) -> None:
        self.client = client
        self.stream_id = stream_id
        sessionmaker = client.app[DB_SESSIONMAKER]
        view = StreamView(client.app)
        self.events = DatabaseStreamEvents(sessionmaker, view)
        self.store = DatabaseRecordingStore(sessionmaker, view)
        self.resume = DatabaseSessionResume(sessionmaker, view, self.events)
        self.leases = {n: StreamLeases(sessionmaker, n, 30) for n in ("node-a", "node-b")}

    async def a_began(self) -> tuple[SessionInfo, str]:
        lease = await self.leases["node-a"].claim(self.stream_id)
        assert lease is not None and lease.generation == 1
        info = SessionInfo(self.stream_id, new_object_id(), time.time(), "203.0.113.7:1", 1)
        await self.events.session_started(info)
        rid = await self.store.recording_started(
            self.stream_id, info.started_at, session_id=info.session_id, generation=1
        )
        return info, rid

    async def b_claims(self) -> int:
        await set_column_seconds_ago(
            self.client.app[DB_SESSIONMAKER], self.stream_id, "expires_at", 1
        )
        lease = await self.leases["node-b"].claim(self.stream_id)
        assert lease is not None
        return lease.generation

    async def row(self, model: type[LiveSession] | type[Recording], key: str):  # type: ignore[no-untyped-def]
        async with self.client.app[DB_SESSIONMAKER]() as session:
            return await session.get(model, key)


async def owners(api_client: TestClient, account: AccountCredentials) -> Owners:
    await stop_dispatcher(api_client)
    stream = await create_stream(api_client, account, record=True)
    return Owners(api_client, stream["id"])


async def test_a_new_owner_inside_the_window_continues_the_session_and_its_recording(
    api_client: TestClient, account: AccountCredentials
) -> None:
    o = await owners(api_client, account)
    info, rid = await o.a_began()
    generation = await o.b_claims()
    assert generation == 2

    resumed = await o.resume.resume(
        o.stream_id, generation, window=WINDOW, client_address="198.51.100.2:2"
    )
    assert resumed is not None
    assert (resumed.session_id, resumed.recording_id) == (info.session_id, rid)
    assert abs(resumed.started_at - info.started_at) < 0.001
    assert resumed.reconnects == 1
    session = await o.row(LiveSession, info.session_id)
    assert (session.lease_generation, session.reconnects, session.ended_at) == (2, 1, None)
    assert session.recording_id == rid
    assert (await o.row(Recording, rid)).lease_generation == 2
    # Taken once: the same generation (or an older one) cannot take it again.
    again = await o.resume.resume(o.stream_id, 2, window=WINDOW, client_address="x:1")
    assert again is None


async def test_a_previous_owner_last_seen_before_the_window_is_not_continued(
    api_client: TestClient, account: AccountCredentials
) -> None:
    o = await owners(api_client, account)
    info, _ = await o.a_began()
    sessionmaker = api_client.app[DB_SESSIONMAKER]
    await set_column_seconds_ago(sessionmaker, o.stream_id, "renewed_at", WINDOW + 5)
    generation = await o.b_claims()

    assert (
        await o.resume.resume(o.stream_id, generation, window=WINDOW, client_address="x:1") is None
    )
    assert (await o.row(LiveSession, info.session_id)).lease_generation == 1
    assert await o.resume.close_older(o.stream_id, generation) == 1
    closed = await o.row(LiveSession, info.session_id)
    assert closed.ended_at is not None and closed.end_reason == "lease_lost"


async def test_a_stale_owners_session_writes_are_refused(
    api_client: TestClient, account: AccountCredentials
) -> None:
    o = await owners(api_client, account)
    info, _ = await o.a_began()
    generation = await o.b_claims()
    assert await o.resume.resume(o.stream_id, generation, window=WINDOW, client_address="b:1")

    await o.events.session_reconnected(info, "203.0.113.7:2")
    await o.events.session_ended(info, ended_at=time.time(), reason="lease_lost", bytes_in=5)
    row = await o.row(LiveSession, info.session_id)
    assert (row.ended_at, row.end_reason, row.reconnects, row.bytes_in) == (None, None, 1, 0)

    current = SessionInfo(o.stream_id, info.session_id, info.started_at, "b:1", generation)
    await o.events.session_ended(current, ended_at=time.time(), reason="publisher_left", bytes_in=9)
    row = await o.row(LiveSession, info.session_id)
    assert (row.end_reason, row.bytes_in) == ("publisher_left", 9)
    await o.events.session_ended(info, ended_at=time.time(), reason="error", bytes_in=1)
    assert (await o.row(LiveSession, info.session_id)).end_reason == "publisher_left"


async def test_a_stale_owners_final_recording_state_is_refused(
    api_client: TestClient, account: AccountCredentials
) -> None:
    o = await owners(api_client, account)
    info, rid = await o.a_began()
    generation = await o.b_claims()
    assert await o.resume.resume(o.stream_id, generation, window=WINDOW, client_address="b:1")

    stale = RecordingSummary(
        rid,
        o.stream_id,
        "failed",
        info.started_at,
        time.time(),
        error="conflict",
        lease_generation=1,
    )
    await o.store.recording_finished(stale)
    recording = await o.row(Recording, rid)
    assert (recording.status, recording.error) == ("recording", None)

    ready = RecordingSummary(
        rid, o.stream_id, "ready", info.started_at, time.time(), 8.0, 100, 4, lease_generation=2
    )
    await o.store.recording_finished(ready)
    await o.store.recording_finished(stale)  # a final state is final
    async with api_client.app[DB_SESSIONMAKER]() as session:
        [recording] = (await session.scalars(select(Recording).where(Recording.id == rid))).all()
    assert (recording.status, recording.segments, recording.lease_generation) == ("ready", 4, 2)


async def test_a_new_generation_keeps_when_the_previous_owner_was_last_seen(
    api_client: TestClient, account: AccountCredentials
) -> None:
    o = await owners(api_client, account)
    sessionmaker = api_client.app[DB_SESSIONMAKER]
    a, b = o.leases["node-a"], o.leases["node-b"]
    first = await a.claim(o.stream_id)
    assert first is not None
    await set_column_seconds_ago(sessionmaker, o.stream_id, "renewed_at", 42)
    kept = await a.claim(o.stream_id)  # the same ownership: no previous owner to speak of
    assert kept is not None and kept.generation == 1
    assert await seen_ago(o) is None

    await set_column_seconds_ago(sessionmaker, o.stream_id, "renewed_at", 42)
    await set_column_seconds_ago(sessionmaker, o.stream_id, "expires_at", 1)
    second = await b.claim(o.stream_id)
    assert second is not None and second.generation == 2
    assert 40 < (await seen_ago(o) or 0) < 60  # A's last renewal

    assert await b.release(second)  # a release is the owner's last sign of life
    third = await a.claim(o.stream_id)
    assert third is not None and third.generation == 3
    assert 0 <= (await seen_ago(o) or -1) < 10


async def seen_ago(o: Owners) -> float | None:
    """Seconds since the previous ownership was last seen, by the database's clock."""
    async with o.client.app[DB_SESSIONMAKER]() as session:
        row = await session.execute(
            select(StreamLease.previous_renewed_at).where(StreamLease.stream_id == o.stream_id)
        )
        previous = row.scalar_one()
        now = await database_now(session)
    return None if previous is None else (now - previous).total_seconds()
