"""SQLite transactions that read before they write, next to other writers (WAL mode).

A deferred SQLite transaction that has read, and then writes after another connection
committed, fails at once with "database is locked" whatever the busy timeout. The engine begins
a transaction with ``BEGIN IMMEDIATE`` at its first write (``api.database``), so it never holds
a snapshot when it asks for the write lock. A plain ``BEGIN`` for every transaction (the
SQLAlchemy recipe as written, or the sqlite3 driver's ``autocommit=False``) fails the first two
tests; the sqlite3 driver's own transactions fail the third.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api import queries
from api.database import create_engine, upgrade_to_head
from api.models import Account
from config import Settings

CONCURRENT = 12


@pytest.fixture
async def sessionmaker(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The app's SQLite engine on a fresh, migrated file in ``tmp_path``."""
    engine = create_engine(Settings(data_dir=tmp_path))
    try:
        await upgrade_to_head(engine)
        yield async_sessionmaker(engine, expire_on_commit=False)
    finally:
        await engine.dispose()


async def new_account(sessionmaker: async_sessionmaker[AsyncSession], name: str) -> str:
    async with sessionmaker() as session, session.begin():
        return (await queries.create_account(session, name)).id


def rename_now(database: Path, account_id: str, name: str) -> bool:
    """Rename the account from a connection of another process (like the CLI) that does not
    wait for locks; returns whether it could write."""
    connection = sqlite3.connect(database, timeout=0)
    try:
        with connection:
            connection.execute("UPDATE accounts SET name = ? WHERE id = ?", (name, account_id))
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return False
    finally:
        connection.close()
    return True


async def test_a_transaction_that_read_can_write_after_another_connection_committed(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """Deterministic: another process's write lands between this transaction's read and its
    write."""
    account_id = await new_account(sessionmaker, "first")
    other_id = await new_account(sessionmaker, "other")
    database = tmp_path / "liverelay.db"

    async with sessionmaker() as session, session.begin():
        account = await session.get(Account, account_id)
        assert account is not None
        # Another writer comes in between the read and the write: it either commits (and this
        # transaction must still be able to write) or finds the write lock taken.
        wrote_between = rename_now(database, other_id, "renamed meanwhile")
        account.name = "changed after reading"

    if not wrote_between:  # it may write once the transaction is over
        assert rename_now(database, other_id, "renamed meanwhile")
    async with sessionmaker() as session:
        names = dict((await session.execute(text("SELECT id, name FROM accounts"))).all())
    assert names == {account_id: "changed after reading", other_id: "renamed meanwhile"}


async def test_concurrent_read_then_write_transactions_all_commit(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Many tasks of one process, each reading a row, yielding, then changing it."""
    account_ids = [await new_account(sessionmaker, f"n{n}") for n in range(CONCURRENT)]
    ready = asyncio.Barrier(CONCURRENT)

    async def rename(account_id: str) -> None:
        await ready.wait()
        async with sessionmaker() as session, session.begin():
            account = await session.get(Account, account_id)
            assert account is not None
            await asyncio.sleep(0)  # let the other tasks run between the read and the write
            account.name = f"{account.name} renamed"

    await asyncio.gather(*(rename(account_id) for account_id in account_ids))
    async with sessionmaker() as session:
        names = set((await session.execute(text("SELECT name FROM accounts"))).scalars())
    assert names == {f"n{n} renamed" for n in range(CONCURRENT)}


async def test_ddl_and_savepoints_belong_to_the_transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The engine emits BEGIN itself, so DDL (migrations) and SAVEPOINTs are part of the
    transaction: the driver alone would autocommit the DDL and run SAVEPOINTs outside it."""
    async with sessionmaker() as session:
        transaction = await session.begin()
        await session.execute(text("CREATE TABLE scratch (n INTEGER)"))
        await session.execute(text("INSERT INTO scratch VALUES (1)"))
        savepoint = await session.begin_nested()
        await session.execute(text("INSERT INTO scratch VALUES (2)"))
        await savepoint.rollback()
        assert (await session.execute(text("SELECT n FROM scratch"))).scalars().all() == [1]
        await transaction.rollback()
        tables = await session.execute(text("SELECT name FROM sqlite_master WHERE name='scratch'"))
        assert tables.all() == []


async def test_a_connection_closed_inside_a_write_gives_the_write_lock_back(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """A task cancelled between a write and reading its answer (a job's lease claim at shut
    down) has its connection closed by SQLAlchemy, not rolled back. SQLite keeps the write
    transaction of a closed connection, and its lock, while one of its statements is not
    finalized: every other writer then waited for the busy timeout. The engine rolls back a
    connection before it closes it."""
    engine = sessionmaker.kw["bind"]
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE scratch (x INTEGER)"))
    async with engine.connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        await driver.execute("BEGIN IMMEDIATE")
        unread = await driver.execute("INSERT INTO scratch VALUES (1) RETURNING x")
        await connection.invalidate()
    other = sqlite3.connect(tmp_path / "liverelay.db", timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # "database is locked" while the lock is kept
        assert other.execute("SELECT count(*) FROM scratch").fetchone() == (0,)
        other.execute("ROLLBACK")
    finally:
        other.close()
    del unread
