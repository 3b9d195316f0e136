"""Stream ownership leases on SQLite and PostgreSQL: claims, refusals, takeovers with a higher
generation, fenced renewals, releases, and one winner among concurrent claims."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.cluster.clock import POSTGRESQL_CLOCK
from api.cluster.leases import Lease, StreamLeases, claim_statement
from tests.api.cluster.conftest import NewStream
from tests.polling import eventually

TTL = 30.0
"""Long enough never to run out during a test: expiry is always written explicitly."""

Expire = Callable[[str], Awaitable[None]]


@pytest.fixture
def node_a(sessionmaker: async_sessionmaker[AsyncSession]) -> StreamLeases:
    return StreamLeases(sessionmaker, "node-a", TTL)


@pytest.fixture
def node_b(sessionmaker: async_sessionmaker[AsyncSession]) -> StreamLeases:
    return StreamLeases(sessionmaker, "node-b", TTL)


async def test_a_free_stream_is_claimed_at_generation_one(
    node_a: StreamLeases, new_stream: NewStream
) -> None:
    stream_id = await new_stream()
    lease = await node_a.claim(stream_id)
    assert lease is not None
    assert (lease.stream_id, lease.node_id, lease.generation) == (stream_id, "node-a", 1)
    assert await node_a.current(stream_id) == lease


async def test_another_node_is_refused_while_the_lease_is_live(
    node_a: StreamLeases, node_b: StreamLeases, new_stream: NewStream
) -> None:
    stream_id = await new_stream()
    lease = await node_a.claim(stream_id)
    assert lease is not None
    assert await node_b.claim(stream_id) is None
    assert await node_a.current(stream_id) == lease
    again = await node_a.claim(stream_id)  # the owner's own claim keeps its ownership
    assert again is not None and again.generation == 1
    assert again.expires_at >= lease.expires_at


async def test_takeover_after_expiry_bumps_the_generation_and_fences_the_old_owner(
    node_a: StreamLeases, node_b: StreamLeases, new_stream: NewStream, expire_lease: Expire
) -> None:
    stream_id = await new_stream()
    old = await node_a.claim(stream_id)
    assert old is not None
    await expire_lease(stream_id)
    taken = await node_b.claim(stream_id)
    assert taken is not None
    assert (taken.node_id, taken.generation) == ("node-b", old.generation + 1)

    assert await node_a.renew(old) is None  # the stale owner learns it lost the stream
    assert not await node_a.release(old)  # and cannot end the new owner's lease
    assert await node_a.claim(stream_id) is None
    renewed = await node_b.renew(taken)
    assert renewed is not None and (renewed.node_id, renewed.generation) == ("node-b", 2)
    assert await node_b.current(stream_id) == renewed


async def test_renewal_extends_the_lease_of_its_owner(
    node_a: StreamLeases, new_stream: NewStream
) -> None:
    stream_id = await new_stream()
    lease = await node_a.claim(stream_id)
    assert lease is not None
    renewed = await node_a.renew(lease)
    assert renewed is not None
    assert renewed.generation == lease.generation
    assert renewed.expires_at >= lease.expires_at


async def test_an_owner_claiming_again_after_its_lease_lapsed_gets_a_new_generation(
    node_a: StreamLeases, new_stream: NewStream, expire_lease: Expire
) -> None:
    """A lapsed lease may have been owned elsewhere meanwhile: the new ownership is fenced
    from the old one even on the same node."""
    stream_id = await new_stream()
    first = await node_a.claim(stream_id)
    assert first is not None
    await expire_lease(stream_id)
    second = await node_a.claim(stream_id)
    assert second is not None and second.generation == first.generation + 1
    assert await node_a.renew(first) is None


async def test_release_frees_the_stream_at_once_and_keeps_the_generation_growing(
    node_a: StreamLeases, node_b: StreamLeases, new_stream: NewStream
) -> None:
    stream_id = await new_stream()
    lease = await node_a.claim(stream_id)
    assert lease is not None
    assert await node_a.release(lease)
    assert not await node_a.release(lease)  # already ended
    taken = await node_b.claim(stream_id)
    assert taken is not None and taken.generation == lease.generation + 1
    assert await node_b.release(taken)
    back = await node_a.claim(stream_id)
    assert back is not None and back.generation == taken.generation + 1


async def test_owners_are_the_nodes_of_the_live_leases_only(
    node_a: StreamLeases,
    node_b: StreamLeases,
    new_stream: NewStream,
    expire_lease: Callable[[str], Awaitable[None]],
) -> None:
    held_by_a, held_by_b, released, expired, never = [await new_stream() for _ in range(5)]
    assert await node_a.claim(held_by_a) and await node_b.claim(held_by_b)
    lease = await node_a.claim(released)
    assert lease is not None and await node_a.release(lease)
    assert await node_b.claim(expired)
    await expire_lease(expired)
    everything = [held_by_a, held_by_b, released, expired, never]
    assert await node_a.owners(everything) == {held_by_a: "node-a", held_by_b: "node-b"}
    assert await node_b.owners([]) == {}


async def test_a_lease_of_another_node_is_not_renewed_in_its_name(
    node_a: StreamLeases, node_b: StreamLeases, new_stream: NewStream
) -> None:
    lease = await node_a.claim(await new_stream())
    assert lease is not None
    with pytest.raises(ValueError, match="belongs to node node-a"):
        await node_b.renew(lease)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_concurrent_claims_on_postgresql_have_exactly_one_winner(
    engine: AsyncEngine, new_stream: NewStream
) -> None:
    """Two connections claim at once: the second claim runs while the first one's insert is
    not committed yet (it waits on the row), and finds the lease taken when it is. (SQLite
    serialises writers: claims there never run at once.)"""
    stream_id = await new_stream()
    statement = claim_statement(POSTGRESQL_CLOCK)

    def params(node: str) -> dict[str, object]:
        return {"stream_id": stream_id, "node_id": node, "ttl": TTL}

    async with engine.connect() as first, engine.connect() as second:
        second_pid = (await second.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await second.commit()
        won = (await first.execute(statement, params("node-a"))).one_or_none()
        assert won is not None

        async def claim_second() -> object:
            row = (await second.execute(statement, params("node-b"))).one_or_none()
            await second.commit()
            return row

        racing = asyncio.create_task(claim_second())
        async with engine.connect() as observer:

            async def second_waits() -> bool:
                waiting = await observer.execute(
                    text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": second_pid},
                )
                await observer.commit()
                return waiting.scalar_one_or_none() == "Lock"

            await eventually(second_waits, message="the second claim never waited on the first")
        assert not racing.done()
        await first.commit()
        assert await racing is None
    async with engine.connect() as check:
        owner = await check.execute(
            text("SELECT node_id, generation FROM stream_leases WHERE stream_id = :s"),
            {"s": stream_id},
        )
        assert owner.one() == ("node-a", 1)


async def test_many_simultaneous_claims_have_exactly_one_winner(
    sessionmaker: async_sessionmaker[AsyncSession], new_stream: NewStream
) -> None:
    stream_id = await new_stream()
    nodes = [StreamLeases(sessionmaker, f"node-{i}", TTL) for i in range(6)]
    results: list[Lease | None] = await asyncio.gather(*(n.claim(stream_id) for n in nodes))
    winners = [lease for lease in results if lease is not None]
    assert len(winners) == 1
    assert winners[0].generation == 1
    assert await nodes[0].current(stream_id) == winners[0]
