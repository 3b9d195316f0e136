"""Several nodes in one test: ``liverelay serve`` apps started in-process on one shared
database, each with its own node id, data directory, HTTP and RTMP ports. Tests of what nodes
do to each other (leases, admission, recovery) build on :class:`ClusterNodes` through the
``cluster_nodes`` fixture (import it into a ``conftest.py``)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api import queries
from api.app import create_app
from api.cluster.clock import clock_of
from api.cluster.ownership import LeaseOwnership
from api.keys import DB_SESSIONMAKER, OWNERSHIP, PATHS, RTMP_PORT
from config import Secret, Settings
from workers.live_paths import LivePaths

LEASE_SECONDS = 60.0
"""The nodes' lease lifetime: long enough that no renewal runs by itself during a test (tests
renew with :meth:`~api.cluster.keeper.LeaseKeeper.renew_all` when they mean to)."""


@dataclass
class Node:
    """One started node."""

    client: TestClient
    settings: Settings

    @property
    def node_id(self) -> str:
        assert self.settings.node_id is not None
        return self.settings.node_id

    @property
    def paths(self) -> LivePaths:
        return self.client.app[PATHS]

    @property
    def ownership(self) -> LeaseOwnership:
        return self.client.app[OWNERSHIP]

    @property
    def rtmp_port(self) -> int:
        return self.client.app[RTMP_PORT]

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        return self.client.app[DB_SESSIONMAKER]

    @property
    def url(self) -> str:
        """Where the node's HTTP test server listens (no trailing slash)."""
        return str(self.client.make_url("")).rstrip("/")

    async def stop(self) -> None:
        """A clean shutdown."""
        await self.client.close()


class ClusterNodes:
    """Starts nodes on one database (``database_url``), each under ``tmp_path/<node id>``."""

    def __init__(self, aiohttp_client: AiohttpClient, database_url: str, tmp_path: Path) -> None:
        self._aiohttp_client = aiohttp_client
        self.database_url = database_url
        self._tmp_path = tmp_path
        self._run = secrets.token_hex(3)
        """Suffix of this test's node ids: the database is shared by the session's tests, and a
        test that could not stop its nodes cleanly (its database cut, say) leaves their rows
        `serving` for a while, which would refuse a later test's node of the same id."""

    def settings(self, node_id: str, **overrides: Any) -> Settings:
        """The settings of node ``node_id``."""
        values: dict[str, Any] = {
            "data_dir": self._tmp_path / node_id,
            "database_url": Secret(self.database_url),
            "node_id": f"{node_id}-{self._run}",
            "http_port": 0,
            "rtmp_port": 0,
            "metrics_port": 0,
            "public_http_url": "http://testserver",
            "public_rtmp_url": "rtmp://testserver",
            "retention_days": 0,
            "lease_seconds": LEASE_SECONDS,
        }
        return Settings(**{**values, **overrides})

    async def start(self, node_id: str, **overrides: Any) -> Node:
        """Start node ``node_id`` (its start-up recovery runs before this returns)."""
        settings = self.settings(node_id, **overrides)
        client = await self._aiohttp_client(create_app(settings))
        return Node(client, settings)

    @staticmethod
    async def new_stream(node: Node, **fields: Any) -> tuple[str, str]:
        """A live stream of a new account, made through ``node``'s database: (id, key)."""
        async with node.sessionmaker() as session, session.begin():
            account = await queries.create_account(session, "cluster")
            stream = await queries.create_live_stream(session, account.id, "s", False, [])
            for name, value in fields.items():
                setattr(stream, name, value)
        return stream.id, stream.stream_key

    @staticmethod
    async def set_internal_url(node: Node, node_id: str, url: str) -> None:
        """Make node ``node_id``'s registry row (read through ``node``'s database) say it is
        reached at ``url`` (test nodes listen on a port of their test server, not the one of
        their settings)."""
        async with node.sessionmaker() as session, session.begin():
            result = await session.execute(
                text("UPDATE cluster_nodes SET internal_url = :url WHERE id = :id"),
                {"url": url, "id": node_id},
            )
            assert result.rowcount == 1  # type: ignore[attr-defined]

    @staticmethod
    async def expire_lease(node: Node, stream_id: str) -> None:
        """Make ``stream_id``'s lease expired a second ago, by the database's clock (as if its
        owner had stopped renewing it)."""
        async with node.sessionmaker() as session, session.begin():
            clock = clock_of(session)
            result = await session.execute(
                text(
                    f"UPDATE stream_leases SET expires_at = {clock.plus('offset')}"
                    " WHERE stream_id = :stream_id"
                ),
                {"offset": -1.0, "stream_id": stream_id},
            )
            assert result.rowcount == 1  # type: ignore[attr-defined]


async def set_column_seconds_ago(
    sessionmaker: async_sessionmaker[AsyncSession], stream_id: str, column: str, seconds: float
) -> None:
    """Set ``column`` of ``stream_id``'s lease row to ``seconds`` ago, by the database's
    clock (``expires_at``: the owner stopped renewing; ``renewed_at``: when it was last seen)."""
    async with sessionmaker() as session, session.begin():
        clock = clock_of(session)
        result = await session.execute(
            text(
                f"UPDATE stream_leases SET {column} = {clock.plus('offset')}"
                " WHERE stream_id = :stream_id"
            ),
            {"offset": -float(seconds), "stream_id": stream_id},
        )
        assert result.rowcount == 1  # type: ignore[attr-defined]


async def released_seconds_ago(
    sessionmaker: async_sessionmaker[AsyncSession], stream_id: str, seconds: float
) -> None:
    """Make ``stream_id``'s lease released ``seconds`` ago, by the database's clock (a release
    sets ``renewed_at`` and ``expires_at`` to the same time)."""
    async with sessionmaker() as session, session.begin():
        at = clock_of(session).plus("offset")
        result = await session.execute(
            text(
                f"UPDATE stream_leases SET renewed_at = {at}, expires_at = {at}"
                " WHERE stream_id = :stream_id"
            ),
            {"offset": -float(seconds), "stream_id": stream_id},
        )
        assert result.rowcount == 1  # type: ignore[attr-defined]


@pytest.fixture
def cluster_nodes(
    aiohttp_client: AiohttpClient, postgresql_url: str, tmp_path: Path
) -> ClusterNodes:
    """Nodes on the session's PostgreSQL database (stopped at the end of the test)."""
    return ClusterNodes(aiohttp_client, postgresql_url, tmp_path)
