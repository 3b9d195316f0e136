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
from api.cluster.nodes import (
    NodeIdInUse,
    NodeRegistry,
    NodeState,
    count_nodes_by_state,
    data_directory_id_or_none,
    node_identity,
)
from api.database import describe_error
from api.keys import (
    CLUSTER,
    DB_ENGINE,
    DB_SESSIONMAKER,
    DRAIN,
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
        draining: Callable[[], bool] = lambda: False,
    ) -> None:
        self.registry = registry
        self._sessionmaker = sessionmaker
        self._live_streams = live_streams
        self._load = load or CpuShare()
        self._draining = draining
        self.interval = interval
        self.node_states: dict[NodeState, int] | None = None
        """Nodes in each state at the last heartbeat (``None`` before the first one
        succeeded)."""
        self._runner: asyncio.Task[None] | None = None
        self._soon: asyncio.Task[None] | None = None

    @property
    def live_nodes(self) -> int | None:
        """Nodes with a recent heartbeat (serving or draining) at the last heartbeat."""
        states = self.node_states
        return None if states is None else states["serving"] + states["draining"]

    def beat_soon(self) -> None:
        """Heartbeat now, in the background (the node's state changed)."""

        async def beat() -> None:
            await self.beat()

        self._soon = asyncio.create_task(beat(), name="node-heartbeat-now")

    async def beat(self) -> bool:
        """One heartbeat; a failure (the database away, the id taken) is logged and
        ``False``."""
        registry = self.registry
        live_streams, load, draining = self._live_streams(), self._load(), self._draining()
        try:
            if not await registry.heartbeat(live_streams, load, draining=draining):
                log.warning(
                    "node %s is no longer registered; registering again", registry.identity.id
                )
                await registry.register()
                await registry.heartbeat(live_streams, load, draining=draining)
            async with self._sessionmaker() as session:
                self.node_states = await count_nodes_by_state(session, registry.lost_after)
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
        await cancel_and_wait(self._soon)
        self._runner = self._soon = None

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
    """``liverelay_cluster_live_nodes`` and ``liverelay_cluster_nodes{state}``, as counted at
    the last heartbeat, and ``liverelay_node_draining`` (this node, now)."""

    def __init__(self, heartbeat: Heartbeat, draining: Callable[[], bool]) -> None:
        self._heartbeat = heartbeat
        self._draining = draining

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "liverelay_node_draining",
            "1 once this node began draining (it refuses publishes and ends its sessions).",
            value=1 if self._draining() else 0,
        )
        states = self._heartbeat.node_states
        if states is None:
            return
        yield GaugeMetricFamily(
            "liverelay_cluster_live_nodes",
            "Nodes sharing the database whose heartbeat is recent (this one included).",
            value=states["serving"] + states["draining"],
        )
        by_state = GaugeMetricFamily(
            "liverelay_cluster_nodes",
            "Nodes of the registry by state: serving, draining, lost (heartbeat older than "
            "the lease lifetime), gone (stopped cleanly).",
            labels=["state"],
        )
        for state, nodes in states.items():
            by_state.add_metric([state], nodes)
        yield by_state


async def cluster_context(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` (after media): register and heartbeat while the app runs; at clean-up
    mark the node gone."""
    settings = app[SETTINGS]
    sessionmaker = app[DB_SESSIONMAKER]
    ttl = settings.lease_seconds
    ownership = app[OWNERSHIP]
    data_id = await asyncio.to_thread(data_directory_id_or_none, settings.data_dir)
    identity = node_identity(settings, app[RTMP_PORT], ownership.node_id, data_id)
    registry = NodeRegistry(sessionmaker, identity, ttl)
    await registry.register()
    paths = app[PATHS]
    drain = app[DRAIN]
    heartbeat = Heartbeat(
        registry, sessionmaker, paths.publishing, ttl / 3, draining=lambda: drain.draining
    )
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
    app[METRICS].registry.register(ClusterCollector(heartbeat, lambda: drain.draining))
    drain.on_begin(heartbeat.beat_soon)
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
