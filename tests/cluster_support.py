"""Several nodes in one test: ``liverelay serve`` apps started in-process on one shared
database, each with its own node id, data directory, HTTP and RTMP ports. Tests of what nodes
do to each other build on :class:`ClusterNodes` through the ``cluster_nodes`` fixture (import
it into a ``conftest.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from api.keys import DB_SESSIONMAKER, PATHS, RTMP_PORT
from config import Secret, Settings
from workers.live_paths import LivePaths

LEASE_SECONDS = 60.0
"""The nodes' lease lifetime: far longer than any test waits, so a lease a test sees freed was
released, not expired."""


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
    def rtmp_port(self) -> int:
        return self.client.app[RTMP_PORT]

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        return self.client.app[DB_SESSIONMAKER]

    async def stop(self) -> None:
        """A clean shutdown."""
        await self.client.close()


class ClusterNodes:
    """Starts nodes on one database (``database_url``), each under ``tmp_path/<node id>``."""

    def __init__(self, aiohttp_client: AiohttpClient, database_url: str, tmp_path: Path) -> None:
        self._aiohttp_client = aiohttp_client
        self.database_url = database_url
        self._tmp_path = tmp_path

    def settings(self, node_id: str, **overrides: Any) -> Settings:
        """The settings of node ``node_id``."""
        values: dict[str, Any] = {
            "data_dir": self._tmp_path / node_id,
            "database_url": Secret(self.database_url),
            "node_id": node_id,
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


@pytest.fixture
def cluster_nodes(
    aiohttp_client: AiohttpClient, postgresql_url: str, tmp_path: Path
) -> ClusterNodes:
    """Nodes on the session's PostgreSQL database (stopped at the end of the test)."""
    return ClusterNodes(aiohttp_client, postgresql_url, tmp_path)
