"""Engine creation, migrations to head, and the app's database context."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

import migrations
from api.keys import AUTHORIZER, DB_ENGINE, DB_SESSIONMAKER, PLAYBACK_GUARD, SETTINGS
from api.live.publish_auth import DatabasePublishAuthorizer
from api.playback_tokens import PlaybackGuard
from config import Settings

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite writer waits for another one (of this process or another, e.g. the CLI)
to finish writing."""
SQLITE_BEGIN = "BEGIN IMMEDIATE"
"""How a SQLite transaction begins, right before its first statement that is not a read
(:func:`_sqlite_begin_before_write`)."""

_MIGRATION_LOCK_ID = 0x6C69766572  # "liver": serialises migrations of nodes sharing PostgreSQL
_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def database_url(settings: Settings) -> str:
    """The configured URL with an async driver (``postgresql://`` becomes ``+asyncpg``)."""
    url = make_url(settings.database_url_value)
    driver = _ASYNC_DRIVERS.get(url.drivername)
    if driver is not None:
        url = url.set(drivername=driver)
    return url.render_as_string(hide_password=False)


DB_CONNECT_TIMEOUT = 5.0
"""Seconds to get a PostgreSQL connection before the request fails with 503."""
DB_COMMAND_TIMEOUT = 15.0
"""Seconds one PostgreSQL statement may run."""
DB_POOL_SIZE = 10
DB_MAX_OVERFLOW = 20
"""PostgreSQL connections kept open, and opened beyond that under load (30 at most per node).
Many publishers starting at once (a node restart: every encoder reconnects) each need a
connection for the key check and the session row, and a publish whose connection does not come
within the connect timeout is refused: SQLAlchemy's default of 5 + 10 is too few for that."""


def create_engine(settings: Settings) -> AsyncEngine:
    """Create the async engine; SQLite gets WAL and a busy timeout so several processes can
    write (``liverelay apikey create`` while ``liverelay serve`` runs)."""
    url = make_url(database_url(settings))
    if url.get_backend_name() != "sqlite":
        # Fail fast while the server is away (API calls answer 503; publishes are refused);
        # pre-ping replaces connections that died meanwhile, so recovery needs no restart.
        return create_async_engine(
            url,
            pool_pre_ping=True,
            pool_size=DB_POOL_SIZE,
            max_overflow=DB_MAX_OVERFLOW,
            pool_timeout=DB_CONNECT_TIMEOUT,
            connect_args={"timeout": DB_CONNECT_TIMEOUT, "command_timeout": DB_COMMAND_TIMEOUT},
        )
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)
    event.listen(engine.sync_engine, "connect", _sqlite_connect)
    event.listen(engine.sync_engine, "before_cursor_execute", _sqlite_begin_before_write)
    event.listen(engine.sync_engine, "close", _sqlite_rollback_before_close)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver begins transactions only before INSERT/UPDATE/DELETE/REPLACE, deferred, and
    # leaves DDL and SAVEPOINT outside them: _sqlite_begin_before_write begins them instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_rollback_before_close(dbapi_connection: Any, _record: Any) -> None:
    """Roll back what a connection leaves open before the pool closes it. A task cancelled
    between a write and reading its answer (a job's lease claim at shut down) has its
    connection closed, not rolled back, and SQLite keeps the write transaction of a closed
    connection while one of its statements is not finalized: every other writer then waited
    the whole busy timeout for a lock nobody would give back."""
    try:
        dbapi_connection.rollback()
    except Exception as exc:  # closing anyway: a connection that cannot roll back is gone
        log.debug("no rollback before closing a SQLite connection: %s", exc)


def _sqlite_begin_before_write(
    connection: Connection, cursor: Any, statement: str, *_args: Any
) -> None:
    """Begin the SQLite transaction with ``BEGIN IMMEDIATE`` right before its first statement
    that is not a read (a write, DDL or ``SAVEPOINT``). ``SELECT`` statements before it each
    read the latest commit, like PostgreSQL's read committed. A migration run that finds the
    schema at head only reads, so starting a node does not wait for the write lock.

    Not SQLAlchemy's recipe of a ``BEGIN`` for every transaction (its ``begin`` event): with a
    deferred ``BEGIN``, reads join the transaction, and in WAL mode a transaction that has read
    and then writes after another connection committed fails at once with "database is locked"
    (``SQLITE_BUSY_SNAPSHOT``; its snapshot is stale, so the busy timeout does not apply). Every
    ``session.get``-then-change transaction and the webhook claims (which read first) would be
    exposed to it, next to the heartbeat, lease renewals and job turns writing in the
    background. ``BEGIN IMMEDIATE`` for every transaction avoids that, but makes reads queue
    behind writers and each other: it cost about an eighth of the throughput of a burst of API
    changes and publishes (``python -m bench.sqlite_contention``, docs/decisions.md entry 9).

    Beginning at the first write takes the write lock before the transaction has read
    anything, waiting up to the busy timeout for other writers, and leaves reads as they were.
    DDL and ``SAVEPOINT``, which the driver ran outside the transaction, now belong to it: a
    migration that fails on SQLite leaves no half-changed schema behind.
    """
    if _reads_only(statement):
        return
    if not connection.connection.driver_connection.in_transaction:  # type: ignore[union-attr]
        cursor.execute(SQLITE_BEGIN)


def _reads_only(statement: str) -> bool:
    """A ``SELECT``, or a ``PRAGMA`` that sets nothing (the schema reads of the migrations)."""
    head = statement.lstrip()[:6].upper()
    return head == "SELECT" or (head == "PRAGMA" and "=" not in statement)


def alembic_config() -> Config:
    """An Alembic config built in code, pointing at the installed ``migrations`` package."""
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return config


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Apply every pending migration, in one transaction."""
    log.info("migrating database %s to head", engine.url)  # str() hides the password
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def database_context(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: engine, migrations, session factory and publish authorizer."""
    engine = create_engine(app[SETTINGS])
    try:
        await upgrade_to_head(engine)
    except BaseException:
        await engine.dispose()
        raise
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    app[DB_ENGINE] = engine
    app[DB_SESSIONMAKER] = sessionmaker
    app[AUTHORIZER] = DatabasePublishAuthorizer(sessionmaker)
    app[PLAYBACK_GUARD] = PlaybackGuard(sessionmaker)
    yield
    await engine.dispose()


def describe_error(exc: BaseException) -> str:
    """A short description of a database failure without its SQL parameters (which can hold
    stream keys and webhook payloads)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{type(exc).__name__} ({type(exc.orig).__name__})"
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    return type(exc).__name__
