"""Several ``liverelay serve`` processes as one cluster: one fresh PostgreSQL database, one
SeaweedFS bucket (a prefix of its own), each node with its own id, data directory, HTTP and RTMP
ports, an internal URL naming its own HTTP port, and a short lease so that a node killed with
SIGKILL loses its streams within seconds.

The ``cluster`` fixture starts two nodes, ``a`` and ``b``, and an API token made with
``liverelay apikey create`` (which also migrates the database before the nodes start). Tests
play the TCP load balancer themselves: they pick the node a publisher connects to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import POSTGRES_URL_TEMPLATE, postgres_admin
from tests.e2e.serve_process import Service, call, reap_orphans
from tests.polling import eventually
from tests.s3_support import S3Server

LEASE_SECONDS = 3.0
"""The nodes' lease lifetime (``LIVERELAY_LEASE_SECONDS``): a killed owner's streams are free
this long after its last renewal, so a takeover is quick."""


class ClusterNode(Service):
    """One node: a :class:`Service` with the cluster settings."""

    def __init__(self, cluster: Cluster, node_id: str) -> None:
        super().__init__(cluster.workdir / node_id)
        self.node_id = node_id
        self.data_dir = cluster.workdir / node_id
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.env.update(cluster.env)
        self.env.update(
            LIVERELAY_NODE_ID=node_id,
            LIVERELAY_INTERNAL_URL=self.url,
        )

    def upstream(self, stream: dict[str, Any]) -> str:
        """The RTMP URL an encoder sent to this node publishes ``stream`` to."""
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{stream['streamKey']}"

    def playlist(self, stream_id: str) -> str:
        """The stream's live playlist as this node serves it."""
        return f"{self.url}/live/{stream_id}/index.m3u8"

    def has_live_files(self, stream_id: str) -> bool:
        """Whether this node writes the stream's live HLS window itself."""
        return (self.data_dir / "live" / stream_id).exists()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def kill_9(self) -> None:
        """SIGKILL, no cleanup at all (its ffmpeg children are left to :meth:`Cluster.close`)."""
        self.kill()
        assert self.process is not None
        await self.process.wait()


class Cluster:
    """The nodes, their database and bucket prefix, and the API token."""

    def __init__(self, workdir: Path, database: str, s3: S3Server) -> None:
        self.workdir = workdir
        self.database = database
        self.database_url = POSTGRES_URL_TEMPLATE.format(name=database)
        self.s3 = s3
        self.prefix = f"cluster-{secrets.token_hex(4)}"
        self.env = {
            "LIVERELAY_DATABASE_URL": self.database_url,
            "LIVERELAY_LEASE_SECONDS": str(LEASE_SECONDS),
            "LIVERELAY_STORAGE_URL": f"s3://{s3.bucket}/{self.prefix}",
            "LIVERELAY_S3_ENDPOINT": s3.endpoint,
            "LIVERELAY_S3_REGION": "us-east-1",
            "LIVERELAY_RETENTION_DAYS": "0",
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        }
        self.nodes: dict[str, ClusterNode] = {}
        self.token = ""

    def add(self, node_id: str) -> ClusterNode:
        node = ClusterNode(self, node_id)
        self.nodes[node_id] = node
        return node

    async def start(self, *node_ids: str) -> None:
        """Make the API token (migrating the database), then start the nodes together."""
        first = self.add(node_ids[0])
        created = await first.command("apikey", "create", "--name", "cluster")
        self.token = json.loads(created)["token"]
        for node_id in node_ids[1:]:
            self.add(node_id)
        await asyncio.gather(*(self.nodes[n].start() for n in node_ids))

    async def api(self, node: ClusterNode, method: str, path: str, **kwargs: Any) -> dict:
        """An API call with the cluster's token, answered below 300, to ``node``."""
        return await call(node, self.token, method, path, **kwargs)

    async def create_stream(self, node: ClusterNode, **body: Any) -> dict[str, Any]:
        return await self.api(node, "POST", "/v1/livestreams", json={"name": "c", **body})

    async def node_lost(self, node_id: str) -> bool:
        """Whether the registry says ``node_id`` is silent for longer than a lease (so a process
        may start again under that id)."""
        connection = await asyncpg.connect(self.admin_dsn, timeout=10)
        try:
            return bool(
                await connection.fetchval(
                    "SELECT stopped_at IS NOT NULL"
                    " OR now() - last_seen_at > make_interval(secs => $2)"
                    " FROM cluster_nodes WHERE id = $1",
                    node_id,
                    LEASE_SECONDS,
                )
            )
        finally:
            await connection.close()

    async def restart(self, node: ClusterNode) -> None:
        """Start a killed node again under its id, once the registry lets it."""
        await eventually(
            lambda: self.node_lost(node.node_id),
            LEASE_SECONDS + 10,
            interval=0.2,
            message=f"node {node.node_id} never counted as lost",
        )
        await node.start()

    @property
    def admin_dsn(self) -> str:
        """The database for asyncpg (no SQLAlchemy driver part)."""
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://")

    async def close(self) -> None:
        await asyncio.gather(*(node.stop() for node in self.nodes.values()))
        await reap_orphans(self.workdir)


@pytest.fixture
async def cluster(tmp_path: Path, seaweedfs: S3Server) -> AsyncIterator[Cluster]:
    """Nodes ``a`` and ``b`` on a fresh database and bucket prefix (dropped, stopped after)."""
    database = f"liverelay_c_{secrets.token_hex(6)}"
    await postgres_admin(f'CREATE DATABASE "{database}"')
    nodes = Cluster(tmp_path / "cluster", database, seaweedfs)
    try:
        await nodes.start("a", "b")
        yield nodes
    finally:
        await nodes.close()
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            await postgres_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
