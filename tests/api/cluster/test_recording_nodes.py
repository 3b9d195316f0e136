"""Recordings on local disk with several nodes: a recording row names the node that wrote it;
another node forwards its playback there while that node is up, and answers a JSON 503 naming
the problem when it is not (two in-process nodes on PostgreSQL, no object storage)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.live.recording_store import DatabaseRecordingStore
from api.models import Recording
from tests.api.cluster.conftest import set_database_time
from tests.api.conftest import AccountCredentials, create_stream, new_account
from tests.cluster_support import LEASE_SECONDS, ClusterNodes, Node
from tests.e2e.conftest import free_port

PLAYLIST = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg_00001.ts\n#EXT-X-ENDLIST\n"
SEGMENT = b"\x47" * 188 * 4


@pytest.fixture
async def account(two_nodes: list[Node]) -> AccountCredentials:
    return await new_account(two_nodes[1].client)


async def recorded_on(node: Node, stream_id: str) -> str:
    """A finished recording of ``stream_id`` written by ``node``'s store, its files in that
    node's data directory; its id."""
    store = DatabaseRecordingStore(node.sessionmaker, node_id=node.node_id)
    recording_id = await store.recording_started(stream_id, datetime.now(UTC).timestamp())
    async with node.sessionmaker() as session, session.begin():
        row = await session.get(Recording, recording_id)
        assert row is not None and row.node_id == node.node_id
        row.status = "ready"
    directory = node.settings.recordings_dir / recording_id
    directory.mkdir(parents=True)
    (directory / "index.m3u8").write_bytes(PLAYLIST)
    (directory / "seg_00001.ts").write_bytes(SEGMENT)
    return recording_id


async def test_a_recording_on_another_nodes_disk_is_played_through_that_node(
    two_nodes: list[Node], cluster_nodes: ClusterNodes, account: AccountCredentials
) -> None:
    a, b = two_nodes
    stream = await create_stream(b.client, account, record=True)
    recording_id = await recorded_on(a, stream["id"])
    await cluster_nodes.set_internal_url(b, a.node_id, a.url)

    response = await b.client.get(f"/recordings/{recording_id}/index.m3u8")
    assert response.status == 200
    assert await response.read() == PLAYLIST
    response = await b.client.get(f"/recordings/{recording_id}/seg_00001.ts")
    assert response.status == 200
    assert await response.read() == SEGMENT
    response = await b.client.get(f"/live/{stream['id']}/storage/index.m3u8")
    assert response.status == 200
    assert f"/recordings/{recording_id}/seg_00001.ts" in await response.text()
    # A name outside the whitelist is not forwarded.
    assert (await b.client.get(f"/recordings/{recording_id}/x.txt")).status == 404

    # The writer registered but unreachable: 502, as for live playback.
    await cluster_nodes.set_internal_url(b, a.node_id, f"http://127.0.0.1:{free_port()}")
    response = await b.client.get(f"/recordings/{recording_id}/index.m3u8")
    assert response.status == 502
    assert (await response.json())["code"] == "recording_node_unreachable"

    # The writer lost (or gone): a 503 that names the node and the remedy.
    await set_database_time(
        b.sessionmaker, "cluster_nodes", "last_seen_at", ("id", a.node_id), -LEASE_SECONDS - 1
    )
    for url in (
        f"/recordings/{recording_id}/index.m3u8",
        f"/recordings/{recording_id}/seg_00001.ts",
        f"/live/{stream['id']}/storage/index.m3u8",
    ):
        response = await b.client.get(url)
        assert response.status == 503, url
        error = await response.json()
        assert error["code"] == "recording_node_unavailable"
        assert a.node_id in error["message"] and "object storage" in error["message"]

    # Its own node serves it whatever the registry says.
    response = await a.client.get(f"/recordings/{recording_id}/index.m3u8")
    assert response.status == 200


async def test_a_recording_missing_on_its_own_node_is_a_404(
    two_nodes: list[Node], account: AccountCredentials
) -> None:
    b = two_nodes[1]
    stream = await create_stream(b.client, account, record=True)
    recording_id = await recorded_on(b, stream["id"])
    (b.settings.recordings_dir / recording_id / "index.m3u8").unlink()
    assert (await b.client.get(f"/recordings/{recording_id}/index.m3u8")).status == 404
    assert (await b.client.get(f"/recordings/{'0' * 24}/index.m3u8")).status == 404
