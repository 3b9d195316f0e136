"""The ownership of the live paths in the database: claims name the node holding a stream,
releases touch only their own generation, and a lease the node cannot renew ends the stream
here while the database still keeps it from every other node."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.cluster.leases import StreamLeases
from api.cluster.ownership import LeaseOwnership
from config import Settings
from ingest.authorizer import PublishGrant
from tests.api.cluster.conftest import NewStream
from tests.api.conftest import LivePublisher
from tests.fakes import FakeClock, KeyTable
from workers.ffmpeg_binary import resolve_ffmpeg
from workers.live_paths import LivePaths
from workers.ownership import HeldElsewhere, Owned

TTL = 30.0


async def test_a_claim_names_the_owner_and_a_release_ends_only_its_generation(
    sessionmaker: async_sessionmaker[AsyncSession], new_stream: NewStream
) -> None:
    stream_id = await new_stream()
    a = LeaseOwnership(StreamLeases(sessionmaker, "node-a", TTL))
    b = LeaseOwnership(StreamLeases(sessionmaker, "node-b", TTL))
    first = await a.claim(stream_id)
    assert isinstance(first, Owned)
    assert await b.claim(stream_id) == HeldElsewhere("node-a")
    assert await a.claim(stream_id) == first  # kept: same generation

    await a.release(stream_id, first.generation + 1)  # not the one held: nothing happens
    assert await b.claim(stream_id) == HeldElsewhere("node-a")
    await a.release(stream_id, first.generation)
    assert a.keeper.held() == {}
    assert await b.claim(stream_id) == Owned(first.generation + 1)


async def test_an_unrenewable_lease_ends_the_stream_before_another_node_may_claim_it(
    sessionmaker: async_sessionmaker[AsyncSession],
    unreachable: async_sessionmaker[AsyncSession],
    new_stream: NewStream,
    tmp_path: Path,
) -> None:
    stream_id = await new_stream()
    clock = FakeClock()
    ownership = LeaseOwnership(StreamLeases(sessionmaker, "node-a", TTL), monotonic=clock)
    keys = KeyTable()
    keys.grants["key"] = PublishGrant(stream_id)
    settings = Settings(data_dir=tmp_path)
    paths = LivePaths(
        settings, ffmpeg=resolve_ffmpeg(settings), authorizer=keys, ownership=ownership
    )
    try:
        publisher = LivePublisher("203.0.113.7:50000")
        path = publisher.path = await paths.admit("key", publisher)
        assert ownership.keeper.held()[stream_id].generation == path.lease_generation

        ownership.keeper.leases = StreamLeases(unreachable, "node-a", TTL)  # the database away
        clock.advance(TTL - ownership.keeper.interval - 1)
        assert await ownership.keeper.renew_all() == {}
        assert paths.get(stream_id) is path and not path.ending
        clock.advance(1)
        assert await ownership.keeper.renew_all() == {stream_id: "expired"}
        await asyncio.wait_for(path.ended.wait(), 10)
        assert publisher.ended == ["lease_lost"] and paths.get(stream_id) is None

        other = StreamLeases(sessionmaker, "node-b", TTL)
        assert await other.claim(stream_id) is None  # the database still holds it for node-a
    finally:
        await paths.close()
