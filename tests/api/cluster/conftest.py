"""Fixtures of the cluster tests: the session's database (SQLite and PostgreSQL) at head, and
streams to hold leases on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from api import queries
from api.cluster.clock import clock_of
from api.database import create_engine, upgrade_to_head
from config import Secret, Settings
from tests.cluster_support import cluster_nodes as cluster_nodes

NewStream = Callable[[], Awaitable[str]]


@pytest.fixture
async def engine(database_url: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on the session's database, migrated to head."""
    engine = create_engine(Settings(data_dir=tmp_path, database_url=Secret(database_url)))
    try:
        await upgrade_to_head(engine)
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
def new_stream(sessionmaker: async_sessionmaker[AsyncSession]) -> NewStream:
    """Create a live stream (of a new account) and return its id."""

    async def make() -> str:
        async with sessionmaker() as session, session.begin():
            account = await queries.create_account(session, "cluster test")
            stream = await queries.create_live_stream(session, account.id, "s", False, [])
        return stream.id

    return make


async def set_database_time(
    sessionmaker: async_sessionmaker[AsyncSession],
    table: str,
    column: str,
    key: tuple[str, str],
    seconds_from_now: float,
) -> None:
    """Set ``column`` of the ``table`` row whose ``key`` column has ``key``'s value to the
    database's time plus ``seconds_from_now`` (negative: in the past)."""
    async with sessionmaker() as session, session.begin():
        clock = clock_of(session)
        result = await session.execute(
            text(f"UPDATE {table} SET {column} = {clock.plus('offset')} WHERE {key[0]} = :key"),
            {"offset": float(seconds_from_now), "key": key[1]},
        )
        assert result.rowcount == 1  # type: ignore[attr-defined]


@pytest.fixture
def expire_lease(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Callable[[str], Awaitable[None]]:
    """Make the lease of a stream expired a second ago, by the database's clock."""

    async def expire(stream_id: str) -> None:
        await set_database_time(
            sessionmaker, "stream_leases", "expires_at", ("stream_id", stream_id), -1
        )

    return expire


@pytest.fixture
async def unreachable(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a database that cannot be opened (its directory does not exist)."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'x.db'}")
    yield async_sessionmaker(engine)
    await engine.dispose()
