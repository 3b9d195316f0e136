"""The cluster context of ``liverelay serve``: register this node, heartbeat every third of
``LIVERELAY_LEASE_SECONDS``, listen on the control bus, and on a clean shutdown mark the node
gone. Its stream leases are held by the live paths and kept by the media context
(:mod:`api.live.media_context`), which releases them once the paths have ended."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.cluster.bus import Bus, LocalBus, PostgresBus, asyncpg_connect, listener_dsn
from api.cluster.control import RELEASE, ControlHandler, release_message
from api.cluster.keeper import LeaseKeeper
from api.cluster.nodes import NodeIdInUse, NodeRegistry, count_live_nodes, node_identity
from api.database import describe_error
from api.keys import (
    CLUSTER,
    DB_ENGINE,
    DB_SESSIONMAKER,
    METRICS,
    OWNERSHIP,
    PATHS,
    RTMP_PORT,
    SETTINGS,
)
from workers.tasks import cancel_and_wait

log = logging.getLogger(__name__)

STOP_SECONDS = 3.0
"""Bound of marking the node gone at shutdown, which comes before the media's (a database
outage must not eat the time the streams need to end cleanly)."""


class CpuShare:
    """This process's CPU time per second of wall time since the last call, divided by the
    machine's CPU count: 0 (idle) to 1 (every CPU busy with it). Child processes (ffmpeg) are
    not counted."""

    def __init__(
        self,
        cpu: Callable[[], float] = time.process_time,
        wall: Callable[[], float] = time.monotonic,
        cpus: int | None = None,
        min_window: float = 0.5,
    ) -> None:
        self._cpu = cpu
        self._wall = wall
        self._cpus = cpus or os.cpu_count() or 1
        self._min_window = min_window
        self._last = (cpu(), wall())
        self._share = 0.0

    def __call__(self) -> float:
        """The share since the last call, or the last share if less than ``min_window``
        seconds passed since (too short a window to mean anything)."""
        cpu, wall = self._cpu(), self._wall()
        elapsed = wall - self._last[1]
        if elapsed < self._min_window:
            return self._share
        used = cpu - self._last[0]
        self._last = (cpu, wall)
        self._share = min(1.0, max(0.0, used / elapsed / self._cpus))
        return self._share


class Heartbeat:
    """Reports this node's live streams and load to the registry every ``interval`` seconds,
    and counts the live nodes (for ``/metrics``)."""

    def __init__(
        self,
        registry: NodeRegistry,
        sessionmaker: async_sessionmaker[AsyncSession],
        live_streams: Callable[[], int],
        interval: float,
        load: Callable[[], float] | None = None,
    ) -> None:
        self.registry = registry
        self._sessionmaker = sessionmaker
        self._live_streams = live_streams
        self._load = load or CpuShare()
        self.interval = interval
        self.live_nodes: int | None = None
        """Live nodes at the last heartbeat (``None`` before the first one succeeded)."""
        self._runner: asyncio.Task[None] | None = None

    async def beat(self) -> bool:
        """One heartbeat; a failure (the database away, the id taken) is logged and
        ``False``."""
        registry = self.registry
        live_streams, load = self._live_streams(), self._load()
        try:
            if not await registry.heartbeat(live_streams, load):
                log.warning(
                    "node %s is no longer registered; registering again", registry.identity.id
                )
                await registry.register()
                await registry.heartbeat(live_streams, load)
            async with self._sessionmaker() as session:
                self.live_nodes = await count_live_nodes(session, registry.lost_after)
        except NodeIdInUse as exc:
            log.error("%s", exc)
            return False
        except Exception as exc:
            log.warning("node heartbeat failed: %s", describe_error(exc))
            return False
        return True

    def start(self) -> None:
        """Heartbeat in the background."""
        self._runner = asyncio.create_task(self._run(), name="node-heartbeat")

    async def close(self) -> None:
        """Stop heartbeating."""
        await cancel_and_wait(self._runner)
        self._runner = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.beat()


class Cluster:
    """This node in the cluster: its registry row, heartbeat, lease keeper and control bus."""

    def __init__(self, heartbeat: Heartbeat, leases: LeaseKeeper, bus: Bus) -> None:
        self.heartbeat = heartbeat
        self.leases = leases
        self.bus = bus

    @property
    def node_id(self) -> str:
        return self.heartbeat.registry.identity.id

    async def ask_owner_to_release(self, owner_node: str, stream_id: str) -> None:
        """Ask node ``owner_node``, whose lease on ``stream_id`` stands in the way of a newer
        publish here, to end the stream (``replaced``) and release the lease. It is a request:
        the caller still claims the lease, which succeeds once it is released or has expired.
        A failure to send raises."""
        await self.bus.send(RELEASE, release_message(stream_id, self.node_id), to=owner_node)


class ClusterCollector(Collector):
    """``liverelay_cluster_live_nodes``, as counted at the last heartbeat."""

    def __init__(self, heartbeat: Heartbeat) -> None:
        self._heartbeat = heartbeat

    def collect(self) -> Iterator[Metric]:
        if self._heartbeat.live_nodes is not None:
            yield GaugeMetricFamily(
                "liverelay_cluster_live_nodes",
                "Nodes sharing the database whose heartbeat is recent (this one included).",
                value=self._heartbeat.live_nodes,
            )


async def cluster_context(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` (after media): register and heartbeat while the app runs; at clean-up
    mark the node gone."""
    settings = app[SETTINGS]
    sessionmaker = app[DB_SESSIONMAKER]
    ttl = settings.lease_seconds
    ownership = app[OWNERSHIP]
    identity = node_identity(settings, app[RTMP_PORT], ownership.node_id)
    registry = NodeRegistry(sessionmaker, identity, ttl)
    await registry.register()
    paths = app[PATHS]
    heartbeat = Heartbeat(registry, sessionmaker, paths.publishing, ttl / 3)
    handler = ControlHandler(paths, sessionmaker, ownership.keeper.leases)
    bus: Bus
    if app[DB_ENGINE].dialect.name == "sqlite":
        bus = LocalBus(registry.identity.id, handler.handle, handler.resync)
    else:
        connect = asyncpg_connect(listener_dsn(settings))
        bus = PostgresBus(
            registry.identity.id, sessionmaker, connect, handler.handle, handler.resync
        )
    cluster = Cluster(heartbeat, ownership.keeper, bus)
    app[CLUSTER] = cluster
    await heartbeat.beat()
    app[METRICS].registry.register(ClusterCollector(heartbeat))
    log.info("node %s registered (%s)", registry.identity.id, registry.identity.internal_url)
    await bus.start()
    ownership.ask_through(cluster.ask_owner_to_release)
    heartbeat.start()
    try:
        yield
    finally:
        ownership.ask_through(None)
        await bus.close()
        await heartbeat.close()
        try:
            async with asyncio.timeout(STOP_SECONDS):
                await registry.stop()
        except Exception as exc:
            log.warning(
                "node %s not marked gone (it shows as lost): %s",
                registry.identity.id,
                describe_error(exc),
            )
