"""Operator commands reach the node a stream is live on: two nodes on one PostgreSQL, a real
RTMP publisher live on node A (which holds the stream's lease), the API call made on node B."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from api.cluster.bus import PostgresBus, listener_dsn
from api.keys import CLUSTER
from api.models import LiveSession, LiveStream
from ingest.flv import TAG_AUDIO, TAG_VIDEO
from ingest.live import END_MESSAGES
from tests.api.conftest import AccountCredentials, create_stream, new_account
from tests.cluster_support import Node
from tests.polling import eventually
from tests.rtmp_client import RawPublisher

UNPUBLISHED = "NetStream.Unpublish.Success"
KEYFRAME = b"\x17\x01\x00\x00\x00\x00\x00\x00\x05\x65\x88\x84\x00\x10"
"""An AVC keyframe (its NAL unit is not decodable; the outputs start on it all the same)."""


@asynccontextmanager
async def live_on(node: Node, stream: dict[str, Any]) -> AsyncIterator[RawPublisher]:
    """A real RTMP publisher live on ``node``, which holds the stream's lease from then on."""
    publisher, codes = await RawPublisher.start(node.rtmp_port, stream["streamKey"])
    try:
        assert codes == ["NetStream.Publish.Start"]
        assert stream["id"] in node.ownership.keeper.held()  # claimed by the admission
        yield publisher
    finally:
        publisher.close()


async def ended_with(publisher: RawPublisher) -> str:
    """The description of the status the server sent before closing the publisher."""
    statuses = await publisher.statuses_until_closed()
    assert [s["code"] for s in statuses] == [UNPUBLISHED], statuses
    return str(statuses[0]["description"])


@pytest.fixture
async def account(two_nodes: list[Node]) -> AccountCredentials:
    return await new_account(two_nodes[1].client)


@pytest.mark.parametrize(
    ("method", "action", "reason"),
    [
        ("POST", "/disable", "disabled"),
        ("POST", "/reset-stream-key", "reset"),
        ("POST", "/complete", "completed"),
        ("DELETE", "", "deleted"),
    ],
)
async def test_a_command_on_another_node_ends_the_publisher_on_the_owner(
    two_nodes: list[Node], account: AccountCredentials, method: str, action: str, reason: str
) -> None:
    a, b = two_nodes
    stream = await create_stream(b.client, account)
    async with live_on(a, stream) as publisher:
        assert a.paths.get(stream["id"]) is not None
        url = f"/v1/livestreams/{stream['id']}{action}"
        response = await b.client.request(method, url, headers=account.headers)
        assert response.status == 200, await response.text()

        assert await ended_with(publisher) == END_MESSAGES[reason]  # type: ignore[index]
        await eventually(lambda: a.paths.get(stream["id"]) is None)
        assert b.paths.get(stream["id"]) is None


async def test_a_restream_change_on_another_node_reaches_the_owners_relays(
    two_nodes: list[Node], account: AccountCredentials, unused_tcp_port: int
) -> None:
    a, b = two_nodes
    closed = f"rtmp://127.0.0.1:{unused_tcp_port}"  # refuses at once: the relay keeps retrying
    stream = await create_stream(
        b.client, account, restream=[{"url": f"{closed}/one", "streamKey": "k1"}]
    )
    first_id = stream["restream"][0]["_id"]
    async with live_on(a, stream) as publisher:
        assert await publisher.send(TAG_VIDEO, 0, b"\x17\x00\x00\x00\x00\x01\x64")
        assert await publisher.send(TAG_AUDIO, 0, b"\xaf\x00\x12\x10")
        assert await publisher.send(TAG_VIDEO, 0, KEYFRAME)
        path = a.paths.get(stream["id"])
        assert path is not None
        await eventually(lambda: set(path.outputs.restreams) == {first_id})

        base = f"/v1/livestreams/{stream['id']}/restream"
        response = await b.client.post(
            base, json={"url": f"{closed}/two", "streamKey": "k2"}, headers=account.headers
        )
        added = (await response.json())["_id"]
        await eventually(lambda: set(path.outputs.restreams) == {first_id, added})

        response = await b.client.patch(
            f"{base}/{added}", json={"streamKey": "k3"}, headers=account.headers
        )
        assert response.status == 200
        await eventually(
            lambda: (
                added in path.outputs.restreams
                and path.outputs.restreams[added].target.publish_url == f"{closed}/two/k3"
            )
        )

        response = await b.client.delete(f"{base}/{first_id}", headers=account.headers)
        assert response.status == 200
        await eventually(lambda: set(path.outputs.restreams) == {added})

        response = await b.client.patch(
            f"/v1/livestreams/{stream['id']}", json={"restream": []}, headers=account.headers
        )
        assert response.status == 200
        await eventually(lambda: not path.outputs.restreams)
        assert a.paths.get(stream["id"]) is path


async def test_asking_the_owner_to_release_ends_its_stream_and_frees_the_lease(
    two_nodes: list[Node], account: AccountCredentials
) -> None:
    a, b = two_nodes
    stream = await create_stream(b.client, account)
    async with live_on(a, stream) as publisher:
        leases = b.ownership.keeper.leases
        assert await leases.claim(stream["id"]) is None  # A holds it

        await b.client.app[CLUSTER].ask_owner_to_release(a.node_id, stream["id"])

        assert await ended_with(publisher) == END_MESSAGES["replaced"]
        # Released, not expired: the nodes' leases live a minute.
        lease = await eventually(lambda: leases.claim(stream["id"]))
        assert lease.node_id == b.node_id
        assert stream["id"] not in a.ownership.keeper.held()


@pytest.mark.parametrize("window", [60, 0])
async def test_a_newer_publish_on_another_node_takes_the_stream_over(
    two_nodes: list[Node], account: AccountCredentials, window: int
) -> None:
    """The admission on B finds A's lease, asks A over the bus to hand the stream over, and
    claims the lease A's end released: the newer publish wins within the admission's wait.
    With a reconnect window A hands its session over and B continues it; without, A ends it
    (``replaced``) and B begins another."""
    a, b = two_nodes
    stream = await create_stream(b.client, account, reconnectWindowSeconds=window)
    async with live_on(a, stream) as first:
        path_a = a.paths.get(stream["id"])
        assert path_a is not None
        session_id = path_a.info.session_id
        await eventually(lambda: session_row(a, session_id))
        second, codes = await RawPublisher.start(b.rtmp_port, stream["streamKey"])
        try:
            assert codes == ["NetStream.Publish.Start"]
            assert await ended_with(first) == END_MESSAGES["replaced"]
            path_b = b.paths.get(stream["id"])
            assert path_b is not None and path_b.resumed == (window > 0)
            assert (path_b.info.session_id == session_id) == (window > 0)
            assert stream["id"] in b.ownership.keeper.held()
            await eventually(lambda: a.paths.get(stream["id"]) is None)
            await path_a.ended.wait()
            row = await session_row(a, session_id)
            assert row is not None
            if window:
                assert (row.ended_at, row.lease_generation) == (None, path_b.lease_generation)
            else:
                assert row.end_reason == "replaced"
        finally:
            second.close()


async def session_row(node: Node, session_id: str) -> LiveSession | None:
    async with node.sessionmaker() as session:
        return await session.get(LiveSession, session_id)


async def test_a_change_whose_message_was_lost_is_applied_by_the_resync(
    two_nodes: list[Node], account: AccountCredentials
) -> None:
    """The stream is disabled while A is not listening (here: straight in the database, so
    no message is sent at all); A's listening connection is killed, and once it listens again
    it re-reads its live streams and ends the disabled one."""
    a, b = two_nodes
    stream = await create_stream(b.client, account)
    async with live_on(a, stream) as publisher:
        async with b.sessionmaker() as session, session.begin():
            row = await session.get(LiveStream, stream["id"])
            assert row is not None
            row.disabled = True
        bus = a.client.app[CLUSTER].bus
        assert isinstance(bus, PostgresBus) and bus.backend_pid is not None
        admin = await asyncpg.connect(listener_dsn(a.settings))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", bus.backend_pid)
        finally:
            await admin.close()

        assert await ended_with(publisher) == END_MESSAGES["disabled"]
        assert bus.listens == 2


async def test_malformed_control_messages_are_ignored_and_the_stream_goes_on(
    two_nodes: list[Node], account: AccountCredentials, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = two_nodes
    stream = await create_stream(b.client, account)
    async with live_on(a, stream) as publisher:
        send = b.client.app[CLUSTER].bus.send
        await send("end", {"stream_id": stream["id"], "reason": "bogus"}, to=a.node_id)
        await send("end", {"stream_id": "../etc", "reason": "disabled"}, to=a.node_id)
        await send("reboot", {"stream_id": stream["id"]}, to=a.node_id)
        await eventually(lambda: "unknown control message reboot" in caplog.text)
        assert "unknown reason" in caplog.text and "no stream id" in caplog.text
        assert a.paths.get(stream["id"]) is not None

        await send("end", {"stream_id": stream["id"], "reason": "completed"}, to=a.node_id)
        assert await ended_with(publisher) == END_MESSAGES["completed"]
