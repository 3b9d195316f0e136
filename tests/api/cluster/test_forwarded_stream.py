"""``GET /v1/livestreams/{id}`` on a node the stream is not live on answers what the owner
answers: its live status and current session (PostgreSQL, two in-process nodes, a real RTMP
publisher)."""

from __future__ import annotations

import pytest

from api.cluster.forwarding import FORWARDED_HEADER
from tests.api.conftest import AccountCredentials, create_stream, new_account
from tests.cluster_support import ClusterNodes, Node
from tests.e2e.conftest import free_port
from tests.polling import eventually
from tests.rtmp_client import RawPublisher


@pytest.fixture
async def account(two_nodes: list[Node]) -> AccountCredentials:
    return await new_account(two_nodes[1].client)


async def test_a_stream_live_on_another_node_shows_its_owners_live_state(
    two_nodes: list[Node], cluster_nodes: ClusterNodes, account: AccountCredentials
) -> None:
    a, b = two_nodes
    stream = await create_stream(b.client, account)
    url = f"/v1/livestreams/{stream['id']}"
    await cluster_nodes.set_internal_url(b, a.node_id, a.url)
    publisher, codes = await RawPublisher.start(a.rtmp_port, stream["streamKey"])
    try:
        assert codes == ["NetStream.Publish.Start"]
        owner = await (await a.client.get(url, headers=account.headers)).json()
        assert owner["status"] == "live"
        assert owner["currentSession"] is not None

        response = await b.client.get(url, headers=account.headers)
        assert response.status == 200
        body = await response.json()
        assert body["status"] == "live"
        assert body["currentSession"]["id"] == owner["currentSession"]["id"]

        # The owner checks the caller's token too; a forwarded request is answered locally.
        other = await new_account(b.client, "other")
        assert (await b.client.get(url, headers=other.headers)).status == 404
        local = await b.client.get(url, headers={**account.headers, FORWARDED_HEADER: "1"})
        assert (await local.json())["status"] == "idle"

        # The console's session cookie is passed on as the token is (the session table is
        # shared, so the owner knows it).
        signed_in = await b.client.post(
            "/console/session",
            json={"apikey": account.apikey, "secret": account.secret},
            headers={"X-Liverelay-Console": "1"},
        )
        assert signed_in.status == 200, await signed_in.text()
        cookie = {"Cookie": f"liverelay_console={signed_in.cookies['liverelay_console'].value}"}
        b.client.session.cookie_jar.clear()
        by_cookie = await b.client.get(url, headers=cookie)
        assert by_cookie.status == 200, await by_cookie.text()
        assert (await by_cookie.json())["currentSession"]["id"] == owner["currentSession"]["id"]
        # A list read with the cookie shows the owner's live figures as well.
        listed = await b.client.get("/v1/livestreams", headers=cookie)
        assert listed.status == 200, await listed.text()
        (row,) = [s for s in (await listed.json())["data"] if s["id"] == stream["id"]]
        assert row["currentSession"] is not None, row
        assert row["currentSession"]["id"] == owner["currentSession"]["id"]

        # The owner unreachable: a JSON 502, not a wrong status.
        await cluster_nodes.set_internal_url(b, a.node_id, f"http://127.0.0.1:{free_port()}")

        async def unreachable() -> dict[str, object] | None:
            response = await b.client.get(url, headers=account.headers)
            return await response.json() if response.status == 502 else None

        error = await eventually(unreachable, 10)
        assert error["code"] == "owner_unreachable"
    finally:
        publisher.close()
