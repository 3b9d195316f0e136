"""The lease keeper: renews what it holds, reports leases taken over or run out while the
database could not be reached, and releases everything at a clean shutdown."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from sqlalchemy import String, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.cluster.clock import database_now
from api.cluster.keeper import LeaseKeeper, LossReason
from api.cluster.leases import StreamLeases
from api.models import UTCDateTime
from tests.api.cluster.conftest import NewStream
from tests.fakes import FakeClock
from tests.polling import eventually

TTL = 30.0


class Losses:
    """What a keeper reported lost, in order."""

    def __init__(self) -> None:
        self.reported: list[tuple[str, LossReason]] = []

    def __call__(self, stream_id: str, reason: LossReason) -> None:
        self.reported.append((stream_id, reason))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def losses() -> Losses:
    return Losses()


@pytest.fixture
def keeper(
    sessionmaker: async_sessionmaker[AsyncSession], losses: Losses, clock: FakeClock
) -> LeaseKeeper:
    return LeaseKeeper(StreamLeases(sessionmaker, "node-a", TTL), losses, monotonic=clock)


async def test_renewal_keeps_held_leases_and_renews_every_third_of_the_ttl(
    keeper: LeaseKeeper, new_stream: NewStream, losses: Losses
) -> None:
    stream_id = await new_stream()
    lease = await keeper.acquire(stream_id)
    assert lease is not None
    assert keeper.interval == TTL / 3
    assert await keeper.renew_all() == {}
    assert keeper.held()[stream_id].generation == lease.generation
    assert keeper.held()[stream_id].expires_at >= lease.expires_at
    assert losses.reported == []


async def test_a_lease_taken_over_is_reported_lost_and_dropped(
    keeper: LeaseKeeper,
    sessionmaker: async_sessionmaker[AsyncSession],
    new_stream: NewStream,
    expire_lease: Callable[[str], Awaitable[None]],
    losses: Losses,
) -> None:
    kept, taken = await new_stream(), await new_stream()
    assert await keeper.acquire(kept) is not None
    assert await keeper.acquire(taken) is not None
    await expire_lease(taken)
    assert await StreamLeases(sessionmaker, "node-b", TTL).claim(taken) is not None
    assert await keeper.renew_all() == {taken: "taken over"}
    assert losses.reported == [(taken, "taken over")]
    assert set(keeper.held()) == {kept}


async def test_a_lease_not_renewable_before_it_could_expire_is_given_up_a_renewal_early(
    keeper: LeaseKeeper,
    new_stream: NewStream,
    losses: Losses,
    clock: FakeClock,
    unreachable: async_sessionmaker[AsyncSession],
) -> None:
    stream_id = await new_stream()
    assert await keeper.acquire(stream_id) is not None
    keeper.leases = StreamLeases(unreachable, "node-a", TTL)
    clock.advance(TTL - keeper.interval - 1)
    assert await keeper.renew_all() == {}  # failed, but the next renewal comes in time
    assert set(keeper.held()) == {stream_id}
    clock.advance(1)  # the next renewal would come when the database may expire the lease
    assert await keeper.renew_all() == {stream_id: "expired"}
    assert losses.reported == [(stream_id, "expired")]
    assert keeper.held() == {}


async def test_close_releases_every_held_lease(
    keeper: LeaseKeeper, sessionmaker: async_sessionmaker[AsyncSession], new_stream: NewStream
) -> None:
    streams = [await new_stream(), await new_stream()]
    for stream_id in streams:
        assert await keeper.acquire(stream_id) is not None
    keeper.start()
    await keeper.close()
    assert keeper.held() == {}
    other = StreamLeases(sessionmaker, "node-b", TTL)
    for stream_id in streams:
        lease = await other.claim(stream_id)  # free at once, without waiting for expiry
        assert lease is not None and lease.generation == 2


async def test_a_stream_owned_elsewhere_is_not_acquired(
    keeper: LeaseKeeper, sessionmaker: async_sessionmaker[AsyncSession], new_stream: NewStream
) -> None:
    stream_id = await new_stream()
    assert await StreamLeases(sessionmaker, "node-b", TTL).claim(stream_id) is not None
    assert await keeper.acquire(stream_id) is None
    assert keeper.held() == {}


async def test_a_renewal_the_database_does_not_answer_is_given_up_in_time(
    sessionmaker: async_sessionmaker[AsyncSession],
    new_stream: NewStream,
    losses: Losses,
    clock: FakeClock,
) -> None:
    if sessionmaker.kw["bind"].dialect.name == "sqlite":
        pytest.skip("a row lock that blocks one statement needs PostgreSQL")
    keeper = LeaseKeeper(StreamLeases(sessionmaker, "node-a", 1.5), losses, monotonic=clock)
    stream_id = await new_stream()
    assert await keeper.acquire(stream_id) is not None
    async with sessionmaker() as blocker, blocker.begin():  # the renewal's UPDATE waits on it
        await blocker.execute(
            text("SELECT 1 FROM stream_leases WHERE stream_id = :s FOR UPDATE"), {"s": stream_id}
        )
        # Bounded by half an interval, then a failure (10 s: fail rather than hang without it).
        assert await asyncio.wait_for(keeper.renew_all(), 10) == {}
        assert set(keeper.held()) == {stream_id}
        clock.advance(keeper.interval * 2)
        assert await asyncio.wait_for(keeper.renew_all(), 10) == {stream_id: "expired"}
    assert losses.reported == [(stream_id, "expired")]


async def test_a_running_keeper_gives_up_every_lease_it_cannot_renew_before_it_could_expire(
    sessionmaker: async_sessionmaker[AsyncSession], new_stream: NewStream
) -> None:
    """Renewals that hang (row locks held elsewhere) of several streams at once: each lease is
    given up before the database could let it expire, not one after the other."""
    if sessionmaker.kw["bind"].dialect.name == "sqlite":
        pytest.skip("a row lock that blocks one statement needs PostgreSQL")
    given_up: dict[str, float] = {}

    def lost(stream_id: str, reason: LossReason) -> None:
        assert reason == "expired"
        given_up[stream_id] = time.time()

    keeper = LeaseKeeper(StreamLeases(sessionmaker, "node-a", 1.5), lost)
    streams = [await new_stream() for _ in range(3)]
    for stream_id in streams:
        assert await keeper.acquire(stream_id) is not None
    keeper.start()
    try:
        async with sessionmaker() as blocker, blocker.begin():  # every renewal waits on it
            await blocker.execute(
                text("SELECT 1 FROM stream_leases WHERE stream_id IN (:a, :b, :c) FOR UPDATE"),
                dict(zip("abc", streams, strict=True)),
            )
            await eventually(lambda: len(given_up) == len(streams), 10)
            asked = time.time()
            now = await database_now(blocker)
            rows = await blocker.execute(
                text(
                    "SELECT stream_id, expires_at FROM stream_leases"
                    " WHERE stream_id IN (:a, :b, :c)"
                ).columns(stream_id=String, expires_at=UTCDateTime),
                dict(zip("abc", streams, strict=True)),
            )
            expires = {stream_id: at for stream_id, at in rows.all()}
    finally:
        await keeper.close()
    for stream_id in streams:  # the moment of the loss on the database's clock, at the latest
        assert now + timedelta(seconds=given_up[stream_id] - asked) < expires[stream_id]
    assert keeper.held() == {}
