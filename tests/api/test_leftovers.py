"""Which sessions left open recovery may close, on SQLite and PostgreSQL: a session whose owner
handed it over (released the lease) waits for the stream's next owner inside its reconnect
window, at start-up and in the periodic sweep; what a dead owner left (its lease expired) is
closed at start-up as before, and by the sweep once its window has passed. Each is closed with
the reason its lease tells."""

from __future__ import annotations

import time

from aiohttp.test_utils import TestClient

from api.cluster.leases import StreamLeases
from api.keys import DB_SESSIONMAKER
from api.live.leftovers import LeftoverSessions, find_leftovers
from api.live.stream_events import DatabaseStreamEvents
from api.live.stream_view import StreamView
from api.models import LiveSession, new_object_id
from tests.api.conftest import AccountCredentials, create_stream
from tests.api.webhook_support import stop_dispatcher
from tests.cluster_support import released_seconds_ago, set_column_seconds_ago
from workers.events import SessionInfo


async def test_recovery_leaves_sessions_waiting_for_their_next_owner(
    api_client: TestClient, account: AccountCredentials
) -> None:
    await stop_dispatcher(api_client)
    sessionmaker = api_client.app[DB_SESSIONMAKER]
    events = DatabaseStreamEvents(sessionmaker, StreamView(api_client.app))
    leases = StreamLeases(sessionmaker, "node-a", 30)
    names = ("held", "handed_over", "handed_over_long_ago", "died", "died_long_ago")
    streams = {n: (await create_stream(api_client, account))["id"] for n in names}
    sessions = {}
    for name, stream_id in streams.items():
        lease = await leases.claim(stream_id)
        assert lease is not None
        sessions[name] = info = SessionInfo(stream_id, new_object_id(), time.time(), "a:1", 1)
        await events.session_started(info)
        if name.startswith("handed_over"):
            assert await leases.release(lease)
        elif name.startswith("died"):
            await set_column_seconds_ago(sessionmaker, stream_id, "expires_at", 1)
        if name == "handed_over_long_ago":  # released 2 minutes ago (window: 60 s)
            await released_seconds_ago(sessionmaker, stream_id, 120)
        elif name == "died_long_ago":  # last renewed 2 minutes ago, expired 30 s later
            await set_column_seconds_ago(sessionmaker, stream_id, "expires_at", 90)
            await set_column_seconds_ago(sessionmaker, stream_id, "renewed_at", 120)

    mine = set(streams.values())  # (the database may hold other tests' streams)
    found = await find_leftovers(sessionmaker, recordings=False)
    assert found.streams >= mine
    assert found.held & mine == {streams["held"]}
    assert found.waiting & mine == {streams["handed_over"], streams["died"]}
    assert found.released & mine == {streams["handed_over"], streams["handed_over_long_ago"]}

    leftovers = LeftoverSessions(sessionmaker, events)
    assert (await leftovers.at_start() or set()) & mine == mine - {streams["handed_over"]}
    assert await leftovers.sweep(set()) & mine == {
        streams["handed_over_long_ago"],
        streams["died_long_ago"],
    }
    # Streams start-up recovery left (held elsewhere then) but a handed-over one that waits.
    assert await leftovers.sweep({streams["handed_over"], streams["died"]}) & mine == {
        streams["died"],
        streams["handed_over_long_ago"],
        streams["died_long_ago"],
    }

    closed = ("handed_over_long_ago", "died_long_ago")
    for name in closed:
        assert await leftovers.close_left_open(streams[name], 2) == 1
    async with sessionmaker() as session:
        rows = [await session.get(LiveSession, sessions[name].session_id) for name in closed]
    assert [row.end_reason if row else None for row in rows] == ["publisher_left", "error"]
