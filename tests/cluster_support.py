"""Several nodes in one test: real apps (``create_app``), each with its own node id, data
directory and RTMP listener, sharing one PostgreSQL database, the way ``liverelay serve``
processes share it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient

from api.app import create_app
from api.keys import CLUSTER, RTMP_PORT
from config import Secret, Settings


@dataclass(frozen=True)
class Node:
    """One started node."""

    client: TestClient

    @property
    def app(self) -> web.Application:
        return self.client.app

    @property
    def node_id(self) -> str:
        return self.app[CLUSTER].node_id

    @property
    def rtmp_port(self) -> int:
        return self.app[RTMP_PORT]


def cluster_settings(database_url: str, data_dir: Path, **changes: object) -> Settings:
    """Settings of a test node on ``database_url`` (ports chosen by the system, fixed public
    URLs, retention off as in ``tests/conftest.py``), with ``changes``."""
    base = Settings(
        data_dir=data_dir,
        database_url=Secret(database_url),
        http_port=0,
        rtmp_port=0,
        metrics_port=0,
        public_http_url="http://testserver",
        public_rtmp_url="rtmp://testserver",
        retention_days=0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def start_nodes(
    aiohttp_client: AiohttpClient, settings: Settings, names: tuple[str, ...] = ("a", "b")
) -> list[Node]:
    """Start one node per name on ``settings``' database, each with a unique node id
    (``node-<name>-<hex>``) and its own directory under ``settings.data_dir``."""
    nodes = []
    for name in names:
        node_id = f"node-{name}-{secrets.token_hex(3)}"
        own = replace(settings, node_id=node_id, data_dir=settings.data_dir / node_id)
        nodes.append(Node(await aiohttp_client(create_app(own))))
    return nodes
