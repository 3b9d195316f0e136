"""Two nodes on one PostgreSQL database: a stream is live on at most one of them. A publish
is refused on a node while another holds the stream's lease and does not hand it over (the
hand-over over the control bus is tested in ``test_commands.py``); once that lease is expired the
other node's publish wins with a higher generation and the former owner ends its session
(``lease_lost``); a node's start-up recovery never touches a stream live on another node."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from api.cluster.leases import StreamLeases
from api.cluster.nodes import NodeIdInUse
from api.keys import RTMP_SERVER
from api.models import LiveSession
from tests.cluster_support import LEASE_SECONDS, ClusterNodes, Node
from tests.polling import eventually
from tests.rtmp_client import RawPublisher

STARTED = ["NetStream.Publish.Start"]


async def session_row(node: Node, session_id: str) -> LiveSession | None:
    async with node.sessionmaker() as session:
        return await session.get(LiveSession, session_id)


async def test_a_stream_live_on_one_node_is_refused_on_another_that_cannot_ask_it(
    cluster_nodes: ClusterNodes,
) -> None:
    """B's request to hand the stream over does not reach A (as with the control bus down),
    so A keeps the stream and B refuses the publish once its wait ran out."""
    a, b = await cluster_nodes.start("node-a"), await cluster_nodes.start("node-b")
    b.ownership.ask_through(None)
    stream_id, key = await cluster_nodes.new_stream(a)
    on_a, codes = await RawPublisher.start(a.rtmp_port, key)
    try:
        assert codes == STARTED
        path = a.paths.get(stream_id)
        assert path is not None and path.lease_generation >= 1

        on_b, codes = await RawPublisher.start(b.rtmp_port, key)
        on_b.close()
        assert codes == ["NetStream.Publish.BadName"]
        await eventually(lambda: b.client.app[RTMP_SERVER].rejected == {"live_elsewhere": 1})
        assert b.paths.get(stream_id) is None
        assert a.paths.get(stream_id) is path and not path.ending
        assert a.ownership.keeper.held()[stream_id].generation == path.lease_generation
    finally:
        on_a.close()


@pytest.mark.parametrize("window", [60, 0])
async def test_an_expired_lease_lets_another_node_take_the_stream_over(
    cluster_nodes: ClusterNodes, window: int
) -> None:
    """Inside the stream's reconnect window the new owner continues the session (one session,
    now of its generation), and the former owner's end of it is refused; without a window the
    new owner begins a new session and closes the former owner's (``lease_lost``)."""
    a, b = await cluster_nodes.start("node-a"), await cluster_nodes.start("node-b")
    stream_id, key = await cluster_nodes.new_stream(a, reconnect_window_seconds=window)
    on_a, codes = await RawPublisher.start(a.rtmp_port, key)
    assert codes == STARTED
    on_b = None
    try:
        path_a = a.paths.get(stream_id)
        assert path_a is not None
        session_id = path_a.info.session_id
        await eventually(lambda: session_row(a, session_id))
        await cluster_nodes.expire_lease(a, stream_id)  # node-a stopped renewing in time

        on_b, codes = await RawPublisher.start(b.rtmp_port, key)
        assert codes == STARTED
        path_b = b.paths.get(stream_id)
        assert path_b is not None and path_b.lease_generation > path_a.lease_generation
        assert path_b.resumed == (window > 0)
        assert (path_b.info.session_id == session_id) == (window > 0)

        assert await a.ownership.keeper.renew_all() == {stream_id: "taken over"}
        await asyncio.wait_for(path_a.ended.wait(), 10)
        assert await on_a.closed_by_server()
        assert a.paths.get(stream_id) is None
        if window:
            row = await session_row(a, session_id)
            assert row is not None and row.ended_at is None and row.end_reason is None
            assert (row.lease_generation, row.reconnects) == (path_b.lease_generation, 1)
        else:
            ended = await eventually(lambda: ended_row(a, session_id))
            assert ended.end_reason == "lease_lost"
            assert ended.lease_generation == path_a.lease_generation

        assert b.paths.get(stream_id) is path_b and not path_b.ending
        assert b.ownership.keeper.held()[stream_id].generation == path_b.lease_generation
        assert await b.ownership.keeper.renew_all() == {}
    finally:
        on_a.close()
        if on_b is not None:
            on_b.close()


async def ended_row(node: Node, session_id: str) -> LiveSession | None:
    row = await session_row(node, session_id)
    return row if row is not None and row.ended_at is not None else None


async def test_a_starting_node_leaves_the_sessions_of_another_live_node_alone(
    cluster_nodes: ClusterNodes,
) -> None:
    b = await cluster_nodes.start("node-b")
    live_id, key = await cluster_nodes.new_stream(b)
    on_b, codes = await RawPublisher.start(b.rtmp_port, key)
    try:
        assert codes == STARTED
        path = b.paths.get(live_id)
        assert path is not None
        live_session = await eventually(lambda: session_row(b, path.info.session_id))
        assert live_session.ended_at is None
        crashed_id, _ = await cluster_nodes.new_stream(b)  # a session nobody holds a lease on
        async with b.sessionmaker() as session, session.begin():
            session.add(
                LiveSession(
                    id="c" * 24,
                    live_stream_id=crashed_id,
                    started_at=datetime.now(UTC),
                    client_address="203.0.113.5:1000",
                    lease_generation=None,
                )
            )

        await cluster_nodes.start("node-a")  # its start-up recovery has run

        async with b.sessionmaker() as session:
            rows = {
                row.live_stream_id: row
                for row in await session.scalars(
                    select(LiveSession).where(LiveSession.live_stream_id.in_([live_id, crashed_id]))
                )
            }
        assert rows[live_id].ended_at is None and rows[live_id].end_reason is None
        assert rows[crashed_id].ended_at is not None and rows[crashed_id].end_reason == "error"
        assert b.paths.get(live_id) is path and not path.ending
        assert await b.ownership.keeper.renew_all() == {}
    finally:
        on_b.close()


async def test_a_second_node_with_a_live_nodes_id_stops_before_it_touches_a_lease(
    cluster_nodes: ClusterNodes,
) -> None:
    a = await cluster_nodes.start("node-a")
    stream_id, key = await cluster_nodes.new_stream(a)
    on_a, codes = await RawPublisher.start(a.rtmp_port, key)
    try:
        assert codes == STARTED
        path = a.paths.get(stream_id)
        assert path is not None
        await eventually(lambda: session_row(a, path.info.session_id))

        with pytest.raises(NodeIdInUse, match="in use by a running node"):
            await cluster_nodes.start("node-a")

        assert a.paths.get(stream_id) is path and not path.ending
        other = StreamLeases(a.sessionmaker, "node-c", LEASE_SECONDS)
        assert await other.claim(stream_id) is None  # node-a's lease was not released
        row = await session_row(a, path.info.session_id)
        assert row is not None and row.ended_at is None
    finally:
        on_a.close()
