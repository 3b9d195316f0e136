"""Every stream object a node answers with shows the stream's true live state, also when the
stream is live on another node: lists (and their status filter), ``PATCH``, ``enable`` and the
restream target routes (PostgreSQL, two in-process nodes, a real RTMP publisher on node A, the
API asked on node B)."""

from __future__ import annotations

from typing import Any

import pytest

from ingest.flv import TAG_AUDIO, TAG_VIDEO
from tests.api.cluster.test_commands import KEYFRAME
from tests.api.conftest import AccountCredentials, create_stream, new_account
from tests.cluster_support import ClusterNodes, Node
from tests.e2e.conftest import free_port
from tests.polling import eventually
from tests.rtmp_client import RawPublisher


@pytest.fixture
async def account(two_nodes: list[Node]) -> AccountCredentials:
    return await new_account(two_nodes[1].client)


async def _json(node: Node, account: AccountCredentials, method: str, url: str, **kw: Any) -> Any:
    response = await node.client.request(method, url, headers=account.headers, **kw)
    assert response.status in (200, 201), await response.text()
    return await response.json()


async def test_lists_and_changes_on_another_node_show_the_owners_live_state(
    two_nodes: list[Node], cluster_nodes: ClusterNodes, account: AccountCredentials
) -> None:
    a, b = two_nodes
    idle = await create_stream(b.client, account, name="idle")
    stream = await create_stream(b.client, account, name="live")
    await cluster_nodes.set_internal_url(b, a.node_id, a.url)
    publisher, codes = await RawPublisher.start(a.rtmp_port, stream["streamKey"])
    try:
        assert codes == ["NetStream.Publish.Start"]
        url = f"/v1/livestreams/{stream['id']}"
        owner = await _json(a, account, "GET", url)
        session_id = owner["currentSession"]["id"]

        listing = await _json(b, account, "GET", "/v1/livestreams")
        by_id = {o["id"]: o for o in listing["data"]}
        assert by_id[stream["id"]]["status"] == "live"
        assert by_id[stream["id"]]["currentSession"]["id"] == session_id
        assert by_id[idle["id"]]["status"] == "idle"
        assert by_id[idle["id"]]["currentSession"] is None

        live = await _json(b, account, "GET", "/v1/livestreams?status=live")
        assert [o["id"] for o in live["data"]] == [stream["id"]]
        idle_list = await _json(b, account, "GET", "/v1/livestreams?status=idle")
        assert [o["id"] for o in idle_list["data"]] == [idle["id"]]

        sessions = await _json(b, account, "GET", f"{url}/sessions")
        assert [(s["id"], s["endedAt"]) for s in sessions["data"]] == [(session_id, None)]

        patched = await _json(b, account, "PATCH", url, json={"name": "renamed"})
        assert patched["name"] == "renamed"
        assert patched["status"] == "live"
        assert patched["currentSession"]["id"] == session_id

        enabled = await _json(b, account, "POST", f"{url}/enable")
        assert (enabled["status"], enabled["currentSession"]["id"]) == ("live", session_id)

        # The owner unreachable: the lease still says live; the session is not known.
        await cluster_nodes.set_internal_url(b, a.node_id, f"http://127.0.0.1:{free_port()}")
        listing = await _json(b, account, "GET", "/v1/livestreams")
        by_id = {o["id"]: o for o in listing["data"]}
        assert by_id[stream["id"]]["status"] == "live"
        assert by_id[stream["id"]]["currentSession"] is None
        assert by_id[idle["id"]]["status"] == "idle"
    finally:
        publisher.close()


async def test_a_restream_target_on_another_node_shows_the_owners_relay_state(
    two_nodes: list[Node], cluster_nodes: ClusterNodes, account: AccountCredentials
) -> None:
    a, b = two_nodes
    closed = f"rtmp://127.0.0.1:{free_port()}"  # refuses at once: the relay keeps retrying
    stream = await create_stream(b.client, account)
    await cluster_nodes.set_internal_url(b, a.node_id, a.url)
    publisher, codes = await RawPublisher.start(a.rtmp_port, stream["streamKey"])
    try:
        assert codes == ["NetStream.Publish.Start"]
        assert await publisher.send(TAG_VIDEO, 0, b"\x17\x00\x00\x00\x00\x01\x64")
        assert await publisher.send(TAG_AUDIO, 0, b"\xaf\x00\x12\x10")
        assert await publisher.send(TAG_VIDEO, 0, KEYFRAME)
        path = a.paths.get(stream["id"])
        assert path is not None
        base = f"/v1/livestreams/{stream['id']}/restream"
        added = await _json(b, account, "POST", base, json={"url": closed, "streamKey": "k"})
        await eventually(lambda: added["_id"] in path.outputs.restreams)

        # No change: the answer is the target as the owner relays it, not an idle one.
        target = await _json(b, account, "PATCH", f"{base}/{added['_id']}", json={})
        assert target["_id"] == added["_id"]
        assert target["status"] != "idle"
        assert target["since"] is not None
    finally:
        publisher.close()


async def test_the_id_filter_is_validated(
    two_nodes: list[Node], account: AccountCredentials
) -> None:
    b = two_nodes[1]
    response = await b.client.get("/v1/livestreams?id=nope", headers=account.headers)
    assert response.status == 400
    assert (await response.json())["details"][0]["field"] == "id"
