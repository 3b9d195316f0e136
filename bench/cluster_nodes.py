"""Several ``liverelay serve`` nodes on one fresh PostgreSQL database, for ``bench.cluster``:
each with its own node id, data directory, ports and internal URL, all sharing one API token.
Nodes can be killed with SIGKILL and started again under the same id."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.common import create_api_key, create_livestreams, liverelay_exe, wait_for_liverelay
from bench.servers import Liverelay

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
"""Where the benchmark creates (and drops) its database."""


class Node(Liverelay):
    """One node: ``liverelay serve`` with the cluster's database, its own id and internal URL."""

    def __init__(self, workdir: Path, node_id: str, database_url: str, lease_seconds: float):
        super().__init__(workdir / node_id, database_url=database_url)
        self.node_id = node_id
        self.env.update(
            {
                "LIVERELAY_NODE_ID": node_id,
                "LIVERELAY_INTERNAL_URL": self.base_url,
                "LIVERELAY_LEASE_SECONDS": str(lease_seconds),
                "LIVERELAY_RETENTION_DAYS": "0",
            }
        )

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    async def serve(self) -> None:
        """Start ``liverelay serve`` (the schema is migrated already), wait until it answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        await self._spawn([liverelay_exe(), "serve"], self.env)
        assert self.proc is not None
        await wait_for_liverelay(self.http_port, self.rtmp_port, self.proc)

    async def kill_9(self) -> None:
        """SIGKILL of the node process alone (its ffmpeg children end at their stdin's EOF)."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    def upstream(self, stream: dict[str, Any]) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{stream['streamKey']}"

    def playlist(self, stream_id: str) -> str:
        return f"{self.base_url}/live/{stream_id}/index.m3u8"


class Cluster:
    """A fresh database ``liverelay_bench_<hex>`` and the nodes on it."""

    def __init__(self, workdir: Path, node_ids: list[str], lease_seconds: float) -> None:
        self.database = f"liverelay_bench_{secrets.token_hex(6)}"
        self.dsn = ADMIN_DSN.rsplit("/", 1)[0] + f"/{self.database}"
        url = self.dsn.replace("postgresql://", "postgresql+asyncpg://")
        self.lease_seconds = lease_seconds
        self.nodes = [Node(workdir, node_id, url, lease_seconds) for node_id in node_ids]
        self.token = ""

    async def __aenter__(self) -> Cluster:
        await admin(f'CREATE DATABASE "{self.database}"')
        try:
            first = self.nodes[0]
            first.workdir.mkdir(parents=True, exist_ok=True)
            self.token = await create_api_key(first.env, first.workdir, "bench")
            await asyncio.gather(*(node.serve() for node in self.nodes))
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await asyncio.gather(*(node.stop() for node in self.nodes), return_exceptions=True)
        await admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    async def create_streams(self, count: int) -> list[dict[str, Any]]:
        return await create_livestreams(self.nodes[0].base_url, self.token, "cluster", count)

    async def restart(self, node: Node, timeout: float = 60.0) -> None:
        """Start a killed node again under its id, once the registry counts it lost."""
        deadline = time.monotonic() + timeout
        while not await self._lost(node.node_id):
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {node.node_id} never counted as lost")
            await asyncio.sleep(0.2)
        await node.serve()

    async def _lost(self, node_id: str) -> bool:
        connection = await asyncpg.connect(self.dsn, timeout=10)
        try:
            return bool(
                await connection.fetchval(
                    "SELECT stopped_at IS NOT NULL"
                    " OR now() - last_seen_at > make_interval(secs => $2)"
                    " FROM cluster_nodes WHERE id = $1",
                    node_id,
                    self.lease_seconds,
                )
            )
        finally:
            await connection.close()

    async def transactions(self) -> int:
        """Transactions committed and rolled back in the cluster's database so far (read from
        the ``postgres`` database, so that reading them counts none)."""
        connection = await asyncpg.connect(ADMIN_DSN, timeout=10)
        try:
            value = await connection.fetchval(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
                self.database,
            )
        finally:
            await connection.close()
        return int(value)


async def admin(statement: str) -> None:
    connection = await asyncpg.connect(ADMIN_DSN, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def serves_segment(
    http: aiohttp.ClientSession, url: str, old: frozenset[str] = frozenset()
) -> bool:
    """Whether ``url`` answers 200 with a playlist that lists a segment not in ``old``."""
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with http.get(url) as response:
            if response.status == 200:
                lines = (await response.text()).splitlines()
                return any(line.endswith(".ts") and line not in old for line in lines)
    return False


def segments_on_disk(node: Node, stream_id: str) -> frozenset[str]:
    """The segment files of the stream in ``node``'s live directory (a killed process's
    leftovers, which the node serves while the stream has no live lease)."""
    return frozenset(path.name for path in (node.data_dir / "live" / stream_id).glob("*.ts"))
