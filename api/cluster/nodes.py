"""The node registry: every ``liverelay serve`` sharing the database keeps a row of
``cluster_nodes`` up to date (its addresses, version, start, last heartbeat, live streams and
load), so that operators (``liverelay nodes``) and, later, the other nodes can see it.

A node is ``serving`` while its last heartbeat is at most ``lost_after`` seconds old by the
database's clock (``draining`` once its drain began), ``lost`` after that (it stopped
heartbeating without a clean shutdown: a crash, a partition), and ``gone`` once it shut down
cleanly. Rows of nodes not seen for
:data:`FORGET_AFTER_SECONDS` are deleted when a node registers.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import Float, Integer, String, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.cluster.clock import clock_of
from api.models import UTCDateTime
from config import Settings

log = logging.getLogger(__name__)

NodeState = Literal["serving", "draining", "lost", "gone"]
NODE_STATES: tuple[NodeState, ...] = ("serving", "draining", "lost", "gone")

FORGET_AFTER_SECONDS = 7 * 86400.0
"""Rows of nodes whose last heartbeat is older than this are deleted (a node gets a new id
with every process by default, so rows would pile up)."""
_NOT_IN_ID = re.compile(r"[^A-Za-z0-9._:-]")
DATA_ID_FILE = "data-id"
_DATA_ID = re.compile(r"[0-9a-f]{16}")


class NodeIdInUse(RuntimeError):
    """Another running node registered with this node's id."""


@dataclass(frozen=True)
class NodeIdentity:
    """What a node says about itself when it registers."""

    id: str
    internal_url: str
    rtmp_address: str
    version: str
    data_id: str | None = None
    """The id of its data directory (:func:`data_directory_id`)."""


def data_directory_id(data_dir: Path) -> str:
    """The id of ``data_dir``, kept in its file ``data-id`` (made, with a random id, the first
    time): the same for every process that uses the directory, so recordings written there can
    be found again after a restart under a new node id."""
    path = data_dir / DATA_ID_FILE
    for _ in range(2):
        try:
            value = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            value = ""
        if _DATA_ID.fullmatch(value):
            return value
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue  # made meanwhile by another process: read it
        with os.fdopen(fd, "w", encoding="ascii") as file:
            value = secrets.token_hex(8)
            file.write(f"{value}\n")
        return value
    raise RuntimeError(f"{path} does not hold a data directory id (16 hex digits): remove it")


def data_directory_id_or_none(data_dir: Path) -> str | None:
    """:func:`data_directory_id`, or ``None`` (logged) when the directory cannot hold it: the
    node still runs (``/readyz`` reports the storage), its recordings are noted without a
    directory."""
    try:
        return data_directory_id(data_dir)
    except (OSError, RuntimeError) as exc:
        log.warning("no data directory id in %s: %s", data_dir, exc)
        return None


def default_node_id() -> str:
    """The host name (what of it fits an id) and 6 random hex digits: unique per process,
    recognisable by host."""
    host = _NOT_IN_ID.sub("-", socket.gethostname())[:120] or "node"
    return f"{host}-{secrets.token_hex(3)}"


def _reachable_host(listen_host: str) -> str:
    host = socket.gethostname() if listen_host in ("0.0.0.0", "::", "") else listen_host
    return f"[{host}]" if ":" in host else host


def node_identity(
    settings: Settings, rtmp_port: int, node_id: str | None = None, data_id: str | None = None
) -> NodeIdentity:
    """This process's identity: ``node_id``, else ``LIVERELAY_NODE_ID`` or
    :func:`default_node_id`;
    ``LIVERELAY_INTERNAL_URL`` or ``http://<host>:<LIVERELAY_HTTP_PORT>`` (the host name when
    listening on every address); the RTMP listener's address with its bound ``rtmp_port``."""
    internal_url = settings.internal_url
    if internal_url is None:
        internal_url = f"http://{_reachable_host(settings.http_host)}:{settings.http_port}"
    return NodeIdentity(
        id=node_id or settings.node_id or default_node_id(),
        internal_url=internal_url.rstrip("/"),
        rtmp_address=f"rtmp://{_reachable_host(settings.rtmp_host)}:{rtmp_port}",
        version=liverelay_version(),
        data_id=data_id,
    )


def liverelay_version() -> str:
    """The installed package's version (``unknown`` outside an installation)."""
    try:
        return importlib.metadata.version("liverelay")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class NodeInfo:
    """A row of the registry, with its state judged by the database's clock."""

    id: str
    internal_url: str
    rtmp_address: str
    version: str
    started_at: datetime
    last_seen_at: datetime
    stopped_at: datetime | None
    draining_since: datetime | None
    live_streams: int
    load: float
    state: NodeState
    seen_seconds_ago: float
    """Seconds between the last heartbeat and the listing, by the database's clock."""


class NodeRegistry:
    """The registry row of one node: registered at start, heartbeat, marked gone at stop."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        identity: NodeIdentity,
        lost_after: float,
    ) -> None:
        self._sessionmaker = sessionmaker
        self.identity = identity
        self.lost_after = lost_after
        self.instance = secrets.token_hex(8)
        """This registry's mark on its row: heartbeats and the stop touch the row only while
        it is still this registration's, not another process's that took the id over."""

    async def register(self) -> None:
        """Write this node's row (started now); raise :class:`NodeIdInUse` if a node with the
        same id is live (heartbeat within ``lost_after`` and not stopped)."""
        me = self.identity
        async with self._sessionmaker() as session, session.begin():
            clock = clock_of(session)
            await session.execute(
                text(f"DELETE FROM cluster_nodes WHERE last_seen_at < {clock.plus('forget')}"),
                {"forget": -FORGET_AFTER_SECONDS},
            )
            registered = await session.execute(
                text(
                    "INSERT INTO cluster_nodes (id, instance, internal_url, rtmp_address,"
                    " version, started_at, last_seen_at, stopped_at, live_streams, load,"
                    " data_id) VALUES"
                    f" (:id, :instance, :internal_url, :rtmp_address, :version, {clock.now},"
                    f" {clock.now}, NULL, 0, 0, :data_id) ON CONFLICT (id) DO UPDATE SET"
                    " instance = excluded.instance, internal_url = excluded.internal_url,"
                    " data_id = excluded.data_id,"
                    " rtmp_address = excluded.rtmp_address, version = excluded.version,"
                    " started_at = excluded.started_at, last_seen_at = excluded.last_seen_at,"
                    " stopped_at = NULL, draining_since = NULL, live_streams = 0, load = 0"
                    " WHERE cluster_nodes.stopped_at IS NOT NULL"
                    f" OR cluster_nodes.last_seen_at < {clock.plus('lost')} RETURNING id"
                ),
                {
                    "id": me.id,
                    "instance": self.instance,
                    "internal_url": me.internal_url,
                    "rtmp_address": me.rtmp_address,
                    "version": me.version,
                    "data_id": me.data_id,
                    "lost": -float(self.lost_after),
                },
            )
            if registered.one_or_none() is None:
                raise NodeIdInUse(
                    f"node id {me.id!r} is in use by a running node (it heartbeat less than "
                    f"{self.lost_after:g} s ago): give this node another LIVERELAY_NODE_ID, or "
                    "wait until that node is shown as lost"
                )

    async def heartbeat(self, live_streams: int, load: float, *, draining: bool = False) -> bool:
        """Record that this node is alive with ``live_streams`` and ``load`` (and, once
        ``draining``, since when it drains); ``False`` if its registration is gone (the row
        deleted, marked stopped, or registered again by another process with this id after
        this node was lost)."""
        async with self._sessionmaker() as session, session.begin():
            clock = clock_of(session)
            since = f"coalesce(draining_since, {clock.now})" if draining else "NULL"
            result = await session.execute(
                text(
                    f"UPDATE cluster_nodes SET last_seen_at = {clock.now},"
                    f" live_streams = :live_streams, load = :load, draining_since = {since}"
                    " WHERE id = :id AND instance = :instance AND stopped_at IS NULL RETURNING id"
                ),
                {
                    "id": self.identity.id,
                    "instance": self.instance,
                    "live_streams": live_streams,
                    "load": float(load),
                },
            )
            return result.one_or_none() is not None

    async def stop(self) -> None:
        """Mark this node gone (a clean shutdown)."""
        async with self._sessionmaker() as session, session.begin():
            clock = clock_of(session)
            await session.execute(
                text(
                    f"UPDATE cluster_nodes SET stopped_at = {clock.now},"
                    f" last_seen_at = {clock.now}, live_streams = 0"
                    " WHERE id = :id AND instance = :instance AND stopped_at IS NULL"
                ),
                {"id": self.identity.id, "instance": self.instance},
            )


async def list_nodes(session: AsyncSession, lost_after: float) -> list[NodeInfo]:
    """Every node of the registry, newest start first."""
    clock = clock_of(session)
    statement = text(
        "SELECT id, internal_url, rtmp_address, version, started_at, last_seen_at, stopped_at,"
        f" draining_since, live_streams, load, {clock.now} AS now FROM cluster_nodes"
        " ORDER BY started_at DESC, id"
    ).columns(
        id=String,
        internal_url=String,
        rtmp_address=String,
        version=String,
        started_at=UTCDateTime,
        last_seen_at=UTCDateTime,
        stopped_at=UTCDateTime,
        draining_since=UTCDateTime,
        live_streams=Integer,
        load=Float,
        now=UTCDateTime,
    )
    nodes = []
    for row in (await session.execute(statement)).all():
        ago = max(0.0, (row.now - row.last_seen_at).total_seconds())
        state: NodeState = (
            "gone"
            if row.stopped_at
            else "lost"
            if ago > lost_after
            else "draining"
            if row.draining_since
            else "serving"
        )
        nodes.append(
            NodeInfo(
                id=row.id,
                internal_url=row.internal_url,
                rtmp_address=row.rtmp_address,
                version=row.version,
                started_at=row.started_at,
                last_seen_at=row.last_seen_at,
                stopped_at=row.stopped_at,
                draining_since=row.draining_since,
                live_streams=row.live_streams,
                load=row.load,
                state=state,
                seen_seconds_ago=ago,
            )
        )
    return nodes


async def count_live_nodes(session: AsyncSession, lost_after: float) -> int:
    """How many nodes are live now."""
    clock = clock_of(session)
    statement = text(
        "SELECT count(*) FROM cluster_nodes WHERE stopped_at IS NULL"
        f" AND last_seen_at >= {clock.plus('lost')}"
    )
    return int((await session.execute(statement, {"lost": -float(lost_after)})).scalar_one())


async def count_nodes_by_state(session: AsyncSession, lost_after: float) -> dict[NodeState, int]:
    """How many nodes of the registry are in each state now (every state, zeros too)."""
    clock = clock_of(session)
    statement = text(
        "SELECT CASE WHEN stopped_at IS NOT NULL THEN 'gone'"
        f" WHEN last_seen_at < {clock.plus('lost')} THEN 'lost'"
        " WHEN draining_since IS NOT NULL THEN 'draining' ELSE 'serving' END AS state,"
        " count(*) AS nodes FROM cluster_nodes GROUP BY 1"
    ).columns(state=String, nodes=Integer)
    counts: dict[NodeState, int] = dict.fromkeys(NODE_STATES, 0)
    for row in (await session.execute(statement, {"lost": -float(lost_after)})).all():
        counts[row.state] = row.nodes
    return counts
