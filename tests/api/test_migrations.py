"""Migrations: they build exactly the models' schema, and run again or back down cleanly."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from api.database import alembic_config, create_engine, upgrade_to_head
from api.models import Base
from config import Secret, Settings
from tests.conftest import POSTGRES_URL_TEMPLATE, postgres_admin

T = datetime(2026, 1, 2, tzinfo=UTC)


@pytest.fixture
async def empty_database_url(database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """A database of the same kind as ``database_url`` with no tables yet."""
    if database_url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    name = f"liverelay_t_{secrets.token_hex(6)}"
    await postgres_admin(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_URL_TEMPLATE.format(name=name)
    finally:
        await postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _schema_differences(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _downgrade_to_base(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, "base")


async def test_migrations_match_models_and_round_trip(
    empty_database_url: str, tmp_path: Path
) -> None:
    engine = create_engine(Settings(data_dir=tmp_path, database_url=Secret(empty_database_url)))
    try:
        await upgrade_to_head(engine)
        await upgrade_to_head(engine)  # a second run finds nothing to do
        async with engine.connect() as connection:
            assert await connection.run_sync(_schema_differences) == []
            assert await connection.run_sync(_tables) >= {
                "accounts",
                "live_streams",
                "restream_targets",
                "alembic_version",
            }
        async with engine.begin() as connection:
            await connection.run_sync(_downgrade_to_base)
        async with engine.connect() as connection:
            assert await connection.run_sync(_tables) == {"alembic_version"}
        await upgrade_to_head(engine)
        async with engine.connect() as connection:
            assert await connection.run_sync(_schema_differences) == []
    finally:
        await engine.dispose()


async def test_sqlite_engine_allows_concurrent_writers(tmp_path: Path) -> None:
    """WAL and a busy timeout, so the CLI can write while ``serve`` runs."""
    engine = create_engine(Settings(data_dir=tmp_path / "nested"))
    try:
        async with engine.connect() as connection:
            journal = (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar()
            timeout = (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar()
            foreign_keys = (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar()
        assert (journal, foreign_keys) == ("wal", 1)
        assert timeout is not None and timeout >= 5000
        assert (tmp_path / "nested" / "liverelay.db").exists()
    finally:
        await engine.dispose()


def _upgrade_to(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def test_deletions_of_earlier_versions_are_carried_out(
    empty_database_url: str, tmp_path: Path
) -> None:
    """Streams of accounts deleted before 0004 become deleted; recordings of deleted streams
    are marked for removal; everything else is untouched."""
    engine = create_engine(Settings(data_dir=tmp_path, database_url=Secret(empty_database_url)))
    rows = {
        "accounts": [("a" * 24, "gone", "k1", "2026-01-01"), ("b" * 24, "kept", "k2", None)],
        "live_streams": [("1" * 24, "a" * 24, "x1", None), ("2" * 24, "b" * 24, "x2", None)],
    }
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_to, "0003_lifecycle_webhooks")
            for id_, name, apikey, deleted in rows["accounts"]:
                await connection.execute(
                    text(
                        "INSERT INTO accounts (id, name, apikey, secret, created_at, deleted_at)"
                        " VALUES (:id, :name, :apikey, 's', :now, :deleted)"
                    ),
                    {"id": id_, "name": name, "apikey": apikey, "now": T, "deleted": deleted and T},
                )
            for id_, account_id, key, _ in rows["live_streams"]:
                await connection.execute(
                    text(
                        "INSERT INTO live_streams (id, account_id, name, record, stream_key,"
                        " created_at, updated_at) VALUES (:id, :account, 'n', true, :key, :now,"
                        " :now)"
                    ),
                    {"id": id_, "account": account_id, "key": key, "now": T},
                )
                await connection.execute(
                    text(
                        "INSERT INTO recordings (id, live_stream_id, status, started_at, duration,"
                        " bytes, segments) VALUES (:id, :stream, 'ready', :now, 0, 0, 0)"
                    ),
                    {"id": id_[:23] + "r", "stream": id_, "now": T},
                )
        await upgrade_to_head(engine)
        async with engine.connect() as connection:
            query = text("SELECT id, deleted_at FROM live_streams")
            streams = dict((await connection.execute(query)).all())
            query = text("SELECT live_stream_id, status FROM recordings")
            statuses = dict((await connection.execute(query)).all())
        assert streams["1" * 24] is not None and streams["2" * 24] is None
        assert statuses == {"1" * 24: "deleted", "2" * 24: "ready"}
    finally:
        await engine.dispose()


async def test_stored_webhook_payloads_lose_their_publish_keys(
    empty_database_url: str, tmp_path: Path
) -> None:
    """Payloads queued before 0004 held the stream key, ``upstreamUrl`` and restream keys: the
    upgrade rewrites them without those, keeping everything else."""
    engine = create_engine(Settings(data_dir=tmp_path, database_url=Secret(empty_database_url)))
    stream = {
        "id": "1" * 24,
        "streamKey": "SECRET-STREAM-KEY",
        "upstreamUrl": "rtmp://h/live/SECRET-STREAM-KEY",
        "restream": [{"id": "t1", "url": "rtmp://y/live2", "streamKey": "SECRET-TARGET-KEY"}],
    }
    payload = json.dumps({"id": "e1", "type": "livestream.started", "data": stream})
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_to, "0003_lifecycle_webhooks")
            await connection.execute(
                text(
                    "INSERT INTO accounts (id, name, apikey, secret, created_at)"
                    " VALUES (:id, 'n', 'k', 's', :now)"
                ),
                {"id": "a" * 24, "now": T},
            )
            await connection.execute(
                text(
                    "INSERT INTO webhooks (id, account_id, url, events, secret, created_at)"
                    " VALUES (:id, :account, 'https://h.example/x', '[\"*\"]', 's', :now)"
                ),
                {"id": "w" * 24, "account": "a" * 24, "now": T},
            )
            await connection.execute(
                text(
                    "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type,"
                    " payload, status, attempts, next_attempt_at, created_at) VALUES"
                    " (:id, :webhook, 'e1', 'livestream.started', :payload, 'pending', 0,"
                    " :now, :now)"
                ),
                {"id": "d" * 24, "webhook": "w" * 24, "payload": payload, "now": T},
            )
        await upgrade_to_head(engine)
        async with engine.connect() as connection:
            query = text("SELECT payload FROM webhook_deliveries")
            stored = (await connection.execute(query)).scalar_one()
        assert "SECRET" not in stored
        data = json.loads(stored)["data"]
        assert data == {"id": "1" * 24, "restream": [{"id": "t1", "url": "rtmp://y/live2"}]}
    finally:
        await engine.dispose()
