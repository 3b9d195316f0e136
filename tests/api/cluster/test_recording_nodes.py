"""Recordings on local disk with several nodes: a recording row names the data directory it was
written into, and the registry the data directory of each node; another node forwards its
playback to the node using that directory while it is up, also after a restart under a new
node id, and answers a JSON 503 naming the problem when none is (two in-process nodes on
PostgreSQL, no object storage)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.cluster.nodes import data_directory_id
from api.keys import DELETION_SWEEPER
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
    data_id = data_directory_id(node.settings.data_dir)
    store = DatabaseRecordingStore(node.sessionmaker, data_id=data_id)
    recording_id = await store.recording_started(stream_id, datetime.now(UTC).timestamp())
    async with node.sessionmaker() as session, session.begin():
        row = await session.get(Recording, recording_id)
        assert row is not None and row.data_id == data_id
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


async def test_a_restarted_node_serves_the_recordings_of_its_data_directory(
    two_nodes: list[Node], cluster_nodes: ClusterNodes, account: AccountCredentials
) -> None:
    a, b = two_nodes
    stream = await create_stream(b.client, account, record=True)
    recording_id = await recorded_on(a, stream["id"])
    await a.stop()
    url = f"/recordings/{recording_id}/index.m3u8"
    response = await b.client.get(url)
    assert response.status == 503
    assert a.node_id in (await response.json())["message"]

    # The same data directory, a new process and node id.
    again = await cluster_nodes.start("node-a-again", data_dir=a.settings.data_dir)
    await cluster_nodes.set_internal_url(b, again.node_id, again.url)
    response = await b.client.get(url)
    assert response.status == 200
    assert await response.read() == PLAYLIST

    # Deleted: a 404 from the other nodes at once.
    async with b.sessionmaker() as session, session.begin():
        row = await session.get(Recording, recording_id)
        assert row is not None
        row.status = "deleted"
    assert (await b.client.get(url)).status == 404


async def test_a_deleted_recording_is_removed_by_the_node_whose_disk_has_it(
    two_nodes: list[Node], account: AccountCredentials
) -> None:
    a, b = two_nodes
    stream = await create_stream(b.client, account, record=True)
    recording_id = await recorded_on(a, stream["id"])
    response = await b.client.delete(f"/v1/livestreams/{stream['id']}", headers=account.headers)
    assert response.status == 200

    # Node B cannot remove files on A's disk: the row stays for A.
    await b.client.app[DELETION_SWEEPER].sweep_all()
    async with b.sessionmaker() as session:
        row = await session.get(Recording, recording_id)
        assert row is not None and row.status == "deleted"
    assert (a.settings.recordings_dir / recording_id).exists()

    # A's sweep withdraws its files and deletes the row, whoever holds the full sweep's turn.
    await a.client.app[DELETION_SWEEPER].sweep_all()
    assert not (a.settings.recordings_dir / recording_id).exists()
    async with a.sessionmaker() as session:
        assert await session.get(Recording, recording_id) is None
