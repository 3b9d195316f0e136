"""``/v1/livestreams``: the seed contract, field for field, on both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import TestClient

from api.keys import AUTHORIZER, PATHS
from tests.api.conftest import (
    HEX24,
    TARGET,
    TIMESTAMP,
    UUID4,
    AccountCredentials,
    MakeAccount,
    assert_error,
    create_stream,
    go_live,
)

STREAM_KEYS = {
    "record",
    "userId",
    "name",
    "streamKey",
    "upstreamUrl",
    "streamUrl",
    "secureUpstreamUrl",
    "secureStreamUrl",
    "downstreamUrl",
    "recordingUrl",
    "restream",
    "createdAt",
    "updatedAt",
    "user",
    "id",
    "status",
    "reconnectWindowSeconds",
    "maxDurationSeconds",
    "latencyMode",
    "playbackPolicy",
    "renditions",
    "currentSession",
}


def assert_stream_shape(stream: dict, account: AccountCredentials) -> None:
    """Every key of the seed's result (plus streamUrl, status, the session limits and
    currentSession), in the seed's formats."""
    assert set(stream) == STREAM_KEYS
    assert HEX24.match(stream["id"])
    assert UUID4.match(stream["streamKey"])
    assert stream["userId"] == account.id
    assert stream["user"] == {"name": account.name, "id": account.id}
    assert stream["upstreamUrl"] == f"rtmp://testserver/live/{stream['streamKey']}"
    assert stream["streamUrl"] == "rtmp://testserver/live"
    assert stream["secureUpstreamUrl"] is None and stream["secureStreamUrl"] is None
    assert stream["downstreamUrl"] == f"http://testserver/live/{stream['id']}/index.m3u8"
    assert stream["recordingUrl"] == f"http://testserver/live/{stream['id']}/storage/index.m3u8"
    assert stream["streamKey"] not in stream["downstreamUrl"] + stream["recordingUrl"]
    assert TIMESTAMP.match(stream["createdAt"]) and TIMESTAMP.match(stream["updatedAt"])
    assert stream["status"] in ("live", "idle", "disabled")
    assert isinstance(stream["reconnectWindowSeconds"], int)
    assert isinstance(stream["maxDurationSeconds"], int)
    if stream["status"] == "idle":
        assert stream["currentSession"] is None
    for target in stream["restream"]:
        # The seed's fields (its example's `_id` and its table's `id`: the same value), plus
        # the state of the relay on this node.
        assert set(target) == {
            "_id",
            "id",
            "url",
            "streamKey",
            "status",
            "lastError",
            "since",
            "retries",
        }
        assert HEX24.match(target["_id"]) and target["id"] == target["_id"]
        if stream["status"] == "idle":
            assert (target["status"], target["lastError"], target["since"]) == ("idle", None, None)
            assert target["retries"] == 0


async def test_create_returns_the_seed_shape(
    api_client: TestClient, account: AccountCredentials
) -> None:
    before = datetime.now(UTC)
    response = await api_client.post(
        "/v1/livestreams",
        json={"name": "Nickname for livestream", "record": True, "restream": [TARGET]},
        headers=account.headers,
    )
    assert response.status == 201
    assert response.content_type == "application/json"
    stream = await response.json()
    assert_stream_shape(stream, account)
    assert response.headers["Location"] == f"/v1/livestreams/{stream['id']}"
    assert stream["name"] == "Nickname for livestream"
    assert stream["record"] is True
    assert stream["status"] == "idle"
    assert [{k: t[k] for k in ("url", "streamKey")} for t in stream["restream"]] == [TARGET]
    created = datetime.strptime(stream["createdAt"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((created - before).total_seconds()) < 5
    assert stream["createdAt"] == stream["updatedAt"]


async def test_create_defaults(api_client: TestClient, account: AccountCredentials) -> None:
    stream = await create_stream(api_client, account, name="zujo")
    assert_stream_shape(stream, account)
    assert stream["record"] is False
    assert stream["restream"] == []
    assert stream["status"] == "idle"
    assert stream["reconnectWindowSeconds"] == 60
    assert stream["maxDurationSeconds"] == 43200
    assert stream["latencyMode"] == "low"
    assert stream["currentSession"] is None


async def test_each_stream_gets_its_own_id_and_key(
    api_client: TestClient, account: AccountCredentials
) -> None:
    first = await create_stream(api_client, account)
    second = await create_stream(api_client, account)
    assert first["id"] != second["id"]
    assert first["streamKey"] != second["streamKey"]


async def test_get_returns_the_same_object(
    api_client: TestClient, account: AccountCredentials
) -> None:
    created = await create_stream(api_client, account, record=True, restream=[TARGET])
    response = await api_client.get(f"/v1/livestreams/{created['id']}", headers=account.headers)
    assert response.status == 200
    assert await response.json() == created


async def test_get_unknown_and_malformed_ids_are_404(
    api_client: TestClient, account: AccountCredentials
) -> None:
    for stream_id in ("0" * 24, "not-an-id", "A" * 24):
        response = await api_client.get(f"/v1/livestreams/{stream_id}", headers=account.headers)
        await assert_error(response, 404, "not_found")


async def test_delete_ends_the_live_session(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account)
    publisher = await go_live(api_client, stream["id"])
    response = await api_client.get(f"/v1/livestreams/{stream['id']}", headers=account.headers)
    assert (await response.json())["status"] == "live"

    response = await api_client.delete(f"/v1/livestreams/{stream['id']}", headers=account.headers)
    assert response.status == 200
    deleted = await response.json()
    assert (deleted["status"], deleted["currentSession"]) == ("idle", None)
    assert publisher.ended == ["deleted"]
    assert api_client.app[PATHS].get(stream["id"]) is None


async def test_list_paginates_newest_first(
    api_client: TestClient, make_account: MakeAccount
) -> None:
    account = await make_account()
    created = [await create_stream(api_client, account, name=f"s{i}") for i in range(5)]

    response = await api_client.get("/v1/livestreams?perPage=2", headers=account.headers)
    assert response.status == 200
    body = await response.json()
    assert set(body) == {"pageInfo", "data"}
    assert body["pageInfo"] == {"currentPage": 1, "perPage": 2, "lastPage": 3}
    pages = [body["data"]]
    for page in (2, 3, 4):
        response = await api_client.get(
            f"/v1/livestreams?page={page}&perPage=2", headers=account.headers
        )
        body = await response.json()
        assert body["pageInfo"] == {"currentPage": page, "perPage": 2, "lastPage": 3}
        pages.append(body["data"])
    assert [len(p) for p in pages] == [2, 2, 1, 0]
    listed = [s for p in pages for s in p]
    assert listed == created[::-1]


async def test_list_defaults_and_empty(api_client: TestClient, account: AccountCredentials) -> None:
    response = await api_client.get("/v1/livestreams", headers=account.headers)
    assert await response.json() == {
        "pageInfo": {"currentPage": 1, "perPage": 20, "lastPage": 1},
        "data": [],
    }


async def test_list_rejects_bad_paging(api_client: TestClient, account: AccountCredentials) -> None:
    for query, field in [
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("page=99999999999999999999", "page"),
        ("perPage=0", "perPage"),
        ("perPage=101", "perPage"),
        ("perPage=1.5", "perPage"),
        ("perPage=", "perPage"),
    ]:
        response = await api_client.get(f"/v1/livestreams?{query}", headers=account.headers)
        await assert_error(response, 400, "validation_error", [field])


async def test_patch_and_post_update(api_client: TestClient, account: AccountCredentials) -> None:
    stream = await create_stream(api_client, account, name="before")
    await asyncio.sleep(0.002)
    url = f"/v1/livestreams/{stream['id']}"
    response = await api_client.patch(url, json={"name": "after"}, headers=account.headers)
    assert response.status == 200
    patched = await response.json()
    assert patched["name"] == "after"
    assert patched["record"] is False
    assert patched["streamKey"] == stream["streamKey"]
    assert patched["createdAt"] == stream["createdAt"]
    assert patched["updatedAt"] > stream["updatedAt"]

    response = await api_client.post(url, json={"record": True}, headers=account.headers)
    assert response.status == 200
    posted = await response.json()
    assert (posted["name"], posted["record"]) == ("after", True)
    response = await api_client.get(url, headers=account.headers)
    assert await response.json() == posted


async def test_empty_update_changes_nothing(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account)
    response = await api_client.patch(
        f"/v1/livestreams/{stream['id']}", json={}, headers=account.headers
    )
    assert await response.json() == stream


async def test_restream_update_replaces_the_list_and_keeps_ids(
    api_client: TestClient, account: AccountCredentials
) -> None:
    a = {"url": "rtmp://a.example.com/live", "streamKey": "ka"}
    b = {"url": "rtmps://b.example.com:443/app", "streamKey": "kb"}
    c = {"url": "rtmp://c.example.com/live", "streamKey": "kc"}
    stream = await create_stream(api_client, account, restream=[a, b])
    ids = {t["url"]: t["_id"] for t in stream["restream"]}
    url = f"/v1/livestreams/{stream['id']}"

    response = await api_client.patch(url, json={"restream": [b, c]}, headers=account.headers)
    targets = (await response.json())["restream"]
    assert [{"url": t["url"], "streamKey": t["streamKey"]} for t in targets] == [b, c]
    assert targets[0]["_id"] == ids[b["url"]]
    assert targets[1]["_id"] not in ids.values()

    changed_key = {**b, "streamKey": "kb2"}
    response = await api_client.patch(
        url, json={"restream": [changed_key]}, headers=account.headers
    )
    targets = (await response.json())["restream"]
    assert targets[0]["_id"] != ids[b["url"]]

    response = await api_client.patch(url, json={"restream": []}, headers=account.headers)
    assert (await response.json())["restream"] == []
    response = await api_client.get(url, headers=account.headers)
    assert (await response.json())["restream"] == []


async def test_delete_returns_the_object_and_removes_it(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account, restream=[TARGET])
    url = f"/v1/livestreams/{stream['id']}"
    response = await api_client.delete(url, headers=account.headers)
    assert response.status == 200
    deleted = await response.json()
    assert deleted == {**stream, "status": "idle"}

    await assert_error(await api_client.get(url, headers=account.headers), 404, "not_found")
    await assert_error(await api_client.delete(url, headers=account.headers), 404, "not_found")
    response = await api_client.get("/v1/livestreams", headers=account.headers)
    assert stream["id"] not in [s["id"] for s in (await response.json())["data"]]


async def test_other_accounts_streams_are_invisible(
    api_client: TestClient, make_account: MakeAccount
) -> None:
    alice = await make_account("alice")
    bob = await make_account("bob")
    stream = await create_stream(api_client, alice)
    url = f"/v1/livestreams/{stream['id']}"

    await assert_error(await api_client.get(url, headers=bob.headers), 404, "not_found")
    response = await api_client.patch(url, json={"name": "mine"}, headers=bob.headers)
    await assert_error(response, 404, "not_found")
    response = await api_client.post(url, json={"name": "mine"}, headers=bob.headers)
    await assert_error(response, 404, "not_found")
    await assert_error(await api_client.delete(url, headers=bob.headers), 404, "not_found")
    response = await api_client.get("/v1/livestreams", headers=bob.headers)
    assert (await response.json())["data"] == []

    response = await api_client.get(url, headers=alice.headers)
    assert await response.json() == stream


async def test_latency_mode_in_create_update_and_every_response(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account, latencyMode="low")
    assert stream["latencyMode"] == "low"
    url = f"/v1/livestreams/{stream['id']}"
    response = await api_client.get(url, headers=account.headers)
    assert (await response.json())["latencyMode"] == "low"
    response = await api_client.get("/v1/livestreams", headers=account.headers)
    assert [s["latencyMode"] for s in (await response.json())["data"]] == ["low"]
    response = await api_client.patch(url, json={"name": "n"}, headers=account.headers)
    assert (await response.json())["latencyMode"] == "low", "unchanged unless given"
    response = await api_client.patch(
        url, json={"latencyMode": "standard"}, headers=account.headers
    )
    assert response.status == 200 and (await response.json())["latencyMode"] == "standard"
    authorizer = api_client.app[AUTHORIZER]
    assert (await authorizer.authorize_publish(stream["streamKey"], "c")).latency_mode == "standard"
    await api_client.patch(url, json={"latencyMode": "low"}, headers=account.headers)
    assert (await authorizer.authorize_publish(stream["streamKey"], "c")).latency_mode == "low"


@pytest.mark.parametrize("value", ["fast", "", None, 1, "LOW"])
async def test_latency_mode_must_be_low_or_standard(
    api_client: TestClient, account: AccountCredentials, value: object
) -> None:
    response = await api_client.post(
        "/v1/livestreams", json={"name": "x", "latencyMode": value}, headers=account.headers
    )
    await assert_error(response, 400, "validation_error")


async def test_a_low_latency_stream_can_be_recorded(
    api_client: TestClient, account: AccountCredentials
) -> None:
    response = await api_client.post(
        "/v1/livestreams",
        json={"name": "x", "record": True, "latencyMode": "low"},
        headers=account.headers,
    )
    assert response.status == 201
    body = await response.json()
    assert (body["record"], body["latencyMode"]) == (True, "low")
    recorded = await create_stream(api_client, account, record=True)
    url = f"/v1/livestreams/{recorded['id']}"
    response = await api_client.patch(url, json={"latencyMode": "low"}, headers=account.headers)
    assert response.status == 200
    assert (await response.json())["latencyMode"] == "low"
    low = await create_stream(api_client, account, latencyMode="low")
    url = f"/v1/livestreams/{low['id']}"
    response = await api_client.patch(url, json={"record": True}, headers=account.headers)
    assert response.status == 200
    response = await api_client.get(url, headers=account.headers)
    assert (await response.json())["record"] is True
