"""A node cut from PostgreSQL (a TCP proxy between node A and the database, cut by the test;
node B connects directly): A ends its stream by itself before its lease can expire, B takes
the stream over while A is still cut (continuing A's session, inside its reconnect window),
and once healed A neither resumes the stream nor touches B's, rejoins the control bus and the
registry, and gets the stream back only through the hand-over rules. Both kinds of cut:
connections reset (fast failures) and a silent black hole (queries hang until a timeout)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime, timedelta
from pathlib import Path

import imageio_ffmpeg
import pytest
from sqlalchemy.engine import make_url

from api.cluster.bus import PostgresBus
from api.cluster.clock import database_now
from api.cluster.leases import Lease, StreamLeases
from api.keys import CLUSTER
from api.models import ClusterNode, LiveSession
from config import Secret
from tests.cluster_support import ClusterNodes, Node
from tests.e2e.conftest import Publisher, make_source, push
from tests.polling import eventually
from tests.tcp_proxy import Cut, TcpProxy
from workers.live_path import LivePath

LEASE_SECONDS = 6.0
"""Short leases, so that a lease lapses within the test (renewed every 2 s). A cut node has one
renewal interval to stop its stream before the lease expires: 2 s here (3.3 s with the default
10 s leases), enough for a loaded machine running two test workers."""


@pytest.fixture
async def db_proxy(postgresql_url: str) -> AsyncIterator[TcpProxy]:
    """A proxy to the session's PostgreSQL server (closed after the nodes stopped: request it
    before ``cluster_nodes``)."""
    url = make_url(postgresql_url)
    proxy = await TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    yield proxy
    await proxy.close()


@pytest.fixture
async def publishers() -> AsyncIterator[list[Publisher]]:
    """ffmpeg publishers started by a test; any still running at the end is killed."""
    started: list[Publisher] = []
    yield started
    for publisher in started:
        if publisher.process.returncode is None:
            publisher.kill()
            await publisher.process.wait()


def through(proxy: TcpProxy, database_url: str) -> str:
    """``database_url`` with its host and port those of ``proxy``."""
    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    return url.render_as_string(hide_password=False)


def live_with_hls(node: Node, stream_id: str) -> LivePath | None:
    """The stream's live path on ``node`` once its HLS ffmpeg runs."""
    path = node.paths.get(stream_id)
    if path is None:
        return None
    process = path.outputs.hls.supervisor.process
    return path if process is not None and process.pid is not None else None


async def moment_of(event: Awaitable[object]) -> float:
    """The wall-clock time (seconds since the epoch) when ``event`` completed."""
    await event
    return time.time()


async def on_database_clock(node: Node, moment: float) -> datetime:
    """An upper bound of what the database's clock read at ``moment`` (this process's wall
    clock): the offset between the two clocks is measured now, through ``node``, and every
    delay of that measurement counts against the bound."""
    asked = time.time()
    async with node.sessionmaker() as session:
        now = await database_now(session)
    return now + timedelta(seconds=moment - asked)


async def lease_row(node: Node, stream_id: str) -> Lease:
    lease = await StreamLeases(node.sessionmaker, node.node_id, LEASE_SECONDS).current(stream_id)
    assert lease is not None
    return lease


async def session_row(node: Node, session_id: str) -> LiveSession:
    async with node.sessionmaker() as session:
        row = await session.get(LiveSession, session_id)
    assert row is not None
    return row


async def session_recorded(node: Node, session_id: str) -> bool:
    async with node.sessionmaker() as session:
        return await session.get(LiveSession, session_id) is not None


async def node_row(node: Node, node_id: str) -> ClusterNode:
    async with node.sessionmaker() as session:
        row = await session.get(ClusterNode, node_id)
    assert row is not None
    return row


@pytest.mark.parametrize("cut", ["reset", "silent"])
async def test_a_node_cut_from_the_database_stops_its_stream_before_another_can_take_it(
    db_proxy: TcpProxy,
    cluster_nodes: ClusterNodes,
    publishers: list[Publisher],
    postgresql_url: str,
    tmp_path: Path,
    cut: Cut,
) -> None:
    a = await cluster_nodes.start(
        "node-a",
        database_url=Secret(through(db_proxy, postgresql_url)),
        lease_seconds=LEASE_SECONDS,
    )
    b = await cluster_nodes.start("node-b", lease_seconds=LEASE_SECONDS)
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    source = make_source(ffmpeg, tmp_path / "av.flv", video=True, audio=True, seconds=4)

    async def publish(node: Node, key: str) -> Publisher:
        url = f"rtmp://127.0.0.1:{node.rtmp_port}/live/{key}"
        publisher = await push(ffmpeg, source, url, loop=True)
        publishers.append(publisher)
        return publisher

    stream_id, key = await cluster_nodes.new_stream(a)
    other_id, other_key = await cluster_nodes.new_stream(b)
    on_a = await publish(a, key)
    on_b_other = await publish(b, other_key)
    path_a = await eventually(lambda: live_with_hls(a, stream_id), 30)
    other = await eventually(lambda: live_with_hls(b, other_id), 30)
    other_generation = other.lease_generation
    hls_a = path_a.outputs.hls.supervisor.process
    assert hls_a is not None
    # The session is in the database before the cut (a session begun while the database was
    # away has nothing another node could continue).
    await eventually(lambda: session_recorded(b, path_a.info.session_id), 30)

    lost: list[tuple[str, int]] = []
    a.ownership.watch(lambda lost_id, generation: lost.append((lost_id, generation)))
    stopped = asyncio.gather(moment_of(on_a.process.wait()), moment_of(hls_a.wait()))

    # Cut just after a renewal (the latest a node can notice it cannot renew): A ends the
    # stream by itself (publisher disconnected, HLS ffmpeg gone) ...
    renewed = (await lease_row(b, stream_id)).expires_at

    async def renewed_again() -> bool:
        return (await lease_row(b, stream_id)).expires_at > renewed

    await eventually(renewed_again, 10, interval=0.005)
    db_proxy.cut(cut)
    stopped_at = max(await asyncio.wait_for(stopped, 30))
    assert lost == [(stream_id, path_a.lease_generation)]
    assert a.paths.get(stream_id) is None
    # ... before its lease, as the database last extended it, can expire.
    held = await lease_row(b, stream_id)
    assert (held.node_id, held.generation) == (a.node_id, path_a.lease_generation)
    assert await on_database_clock(b, stopped_at) < held.expires_at

    # B takes the stream over once the lease expired, A still cut.
    owners = StreamLeases(b.sessionmaker, b.node_id, LEASE_SECONDS)
    await eventually(lambda: owners.owners([stream_id]), 20, message="lease still live")
    on_b = await publish(b, key)
    path_b = await eventually(lambda: live_with_hls(b, stream_id), 30)
    assert path_b.lease_generation > path_a.lease_generation
    assert path_b.resumed and path_b.info.session_id == path_a.info.session_id

    # Heal: A rejoins the bus and the registry, and leaves B's stream alone.
    bus = a.client.app[CLUSTER].bus
    assert isinstance(bus, PostgresBus)
    listens = bus.listens
    healed_at = await on_database_clock(b, time.time())
    db_proxy.heal()
    await eventually(lambda: bus.listening.is_set() and bus.listens > listens, 30)

    async def seen_since_heal() -> bool:
        return (await node_row(b, a.node_id)).last_seen_at > healed_at

    await eventually(seen_since_heal, 15)
    await asyncio.wait_for(path_a.ended.wait(), 30)  # A's own end is written (or given up)
    assert a.paths.get(stream_id) is None and a.ownership.keeper.held() == {}
    assert await lease_row(b, stream_id) == b.ownership.keeper.held()[stream_id]
    assert (await lease_row(b, stream_id)).generation == path_b.lease_generation
    assert (await session_row(b, path_b.info.session_id)).ended_at is None
    assert b.paths.get(stream_id) is path_b and not path_b.ending

    # A later publish on A is a hand-over: B stops its outputs, then A owns the stream.
    hls_b = path_b.outputs.hls.supervisor.process
    assert hls_b is not None
    b_stopped = asyncio.ensure_future(moment_of(hls_b.wait()))
    on_a_again = await publish(a, key)
    path_a_again = await eventually(lambda: live_with_hls(a, stream_id), 30)
    await asyncio.wait_for(on_b.process.wait(), 30)
    await asyncio.wait_for(path_b.ended.wait(), 30)
    assert await b_stopped < path_a_again.opened_at  # never two owners at once
    assert b.paths.get(stream_id) is None and stream_id not in b.ownership.keeper.held()
    assert path_a_again.lease_generation > path_b.lease_generation
    owner = await lease_row(b, stream_id)
    assert (owner.node_id, owner.generation) == (a.node_id, path_a_again.lease_generation)
    # B handed the session over (the stream has a reconnect window): it goes on on A.
    assert path_a_again.info.session_id == path_b.info.session_id
    row = await session_row(b, path_b.info.session_id)
    assert (row.ended_at, row.lease_generation) == (None, path_a_again.lease_generation)
    assert on_a_again.process.returncode is None

    # B's other stream never noticed.
    assert b.paths.get(other_id) is other and not other.ending
    assert other.lease_generation == other_generation
    assert b.ownership.keeper.held()[other_id].generation == other_generation
    assert on_b_other.process.returncode is None
