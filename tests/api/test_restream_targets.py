"""``/v1/livestreams/{id}/restream``: add, change and remove one target at a time, on both
databases; changes reach a live session's relays at once."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.keys import AUTHORIZER, PATHS
from config import Settings
from ingest.flv import TAG_AUDIO, TAG_VIDEO
from tests.api.conftest import HEX24, AccountCredentials, assert_error, create_stream, go_live
from tests.polling import eventually

A = {"url": "rtmp://a.example.com/live", "streamKey": "ka"}
B = {"url": "rtmps://b.example.com:443/app", "streamKey": "kb"}
C = {"url": "rtmp://c.example.com/live", "streamKey": "kc"}


@pytest.fixture
def app_settings(app_settings: Settings) -> Settings:
    """Loopback targets allowed, so a live relay can fail fast without leaving the machine."""
    return replace(app_settings, allow_private_targets=True, output_backoff_max_seconds=1)


def fields(target: dict[str, Any]) -> dict[str, Any]:
    return {"url": target["url"], "streamKey": target["streamKey"]}


async def targets_of(
    client: TestClient, account: AccountCredentials, stream_id: str
) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/livestreams/{stream_id}", headers=account.headers)
    stream: dict[str, Any] = await response.json()
    return list(stream["restream"])


async def test_add_appends_a_target(api_client: TestClient, account: AccountCredentials) -> None:
    stream = await create_stream(api_client, account, restream=[A])
    url = f"/v1/livestreams/{stream['id']}/restream"
    response = await api_client.post(url, json=B, headers=account.headers)
    assert response.status == 201
    target = await response.json()
    assert HEX24.match(target["_id"])
    assert target == {
        "_id": target["_id"],
        "id": target["_id"],
        **B,
        "status": "idle",
        "lastError": None,
        "since": None,
        "retries": 0,
    }
    assert response.headers["Location"] == f"{url}/{target['_id']}"
    listed = await targets_of(api_client, account, stream["id"])
    assert [fields(t) for t in listed] == [A, B]
    assert listed[0]["_id"] == stream["restream"][0]["_id"]
    assert listed[1] == target
    grant = await api_client.app[AUTHORIZER].authorize_publish(stream["streamKey"], "c")
    assert [t.publish_url for t in grant.restream] == [
        "rtmp://a.example.com/live/ka",
        "rtmps://b.example.com:443/app/kb",
    ]


async def test_the_tenth_target_is_the_last(
    api_client: TestClient, account: AccountCredentials
) -> None:
    nine = [{"url": f"rtmp://t{i}.example.com/live", "streamKey": f"k{i}"} for i in range(9)]
    stream = await create_stream(api_client, account, restream=nine)
    url = f"/v1/livestreams/{stream['id']}/restream"
    response = await api_client.post(url, json=A, headers=account.headers)
    assert response.status == 201
    response = await api_client.post(url, json=B, headers=account.headers)
    body = await assert_error(response, 409, "restream_target_limit")
    assert "10" in body["message"]
    assert len(await targets_of(api_client, account, stream["id"])) == 10


async def test_concurrent_adds_never_pass_the_cap(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account)
    url = f"/v1/livestreams/{stream['id']}/restream"
    bodies = [{"url": f"rtmp://t{i}.example.com/live", "streamKey": f"k{i}"} for i in range(14)]
    responses = await asyncio.gather(
        *(api_client.post(url, json=b, headers=account.headers) for b in bodies)
    )
    assert sorted(r.status for r in responses) == [201] * 10 + [409] * 4
    listed = await targets_of(api_client, account, stream["id"])
    assert len(listed) == 10 and len({t["_id"] for t in listed}) == 10


@pytest.mark.parametrize(
    ("body", "fields_"),
    [
        ({"url": "http://a.example.com/live", "streamKey": "k"}, ["url"]),
        ({"url": "rtmp://a.example.com/live"}, ["streamKey"]),
        ({"url": "rtmp://a.example.com/live", "streamKey": "a b"}, ["streamKey"]),
        ({**A, "extra": 1}, ["extra"]),
        ({"url": None, "streamKey": "k"}, ["url"]),
    ],
)
async def test_add_validates_the_body(
    api_client: TestClient, account: AccountCredentials, body: dict, fields_: list[str]
) -> None:
    stream = await create_stream(api_client, account)
    response = await api_client.post(
        f"/v1/livestreams/{stream['id']}/restream", json=body, headers=account.headers
    )
    await assert_error(response, 400, "validation_error", fields_)
    assert await targets_of(api_client, account, stream["id"]) == []


async def test_patch_changes_url_or_key_and_keeps_the_id(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account, restream=[A, B])
    first, second = stream["restream"]
    url = f"/v1/livestreams/{stream['id']}/restream/{first['_id']}"

    response = await api_client.patch(url, json={"streamKey": "ka2"}, headers=account.headers)
    assert response.status == 200
    assert await response.json() == {**first, "streamKey": "ka2"}
    response = await api_client.patch(url, json={"url": C["url"]}, headers=account.headers)
    assert await response.json() == {**first, "url": C["url"], "streamKey": "ka2"}
    response = await api_client.patch(url, json={}, headers=account.headers)
    assert (await response.json())["url"] == C["url"]

    listed = await targets_of(api_client, account, stream["id"])
    assert [t["_id"] for t in listed] == [first["_id"], second["_id"]]
    assert fields(listed[0]) == {"url": C["url"], "streamKey": "ka2"}
    assert listed[1] == second


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://x.example.com"}, "url"),
        ({"streamKey": ""}, "streamKey"),
        ({"url": None}, "url"),
    ],
)
async def test_patch_validates_the_body(
    api_client: TestClient, account: AccountCredentials, body: dict, field: str
) -> None:
    stream = await create_stream(api_client, account, restream=[A])
    target_id = stream["restream"][0]["_id"]
    response = await api_client.patch(
        f"/v1/livestreams/{stream['id']}/restream/{target_id}", json=body, headers=account.headers
    )
    await assert_error(response, 400, "validation_error", [field])


async def test_delete_removes_one_target_and_keeps_the_order(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account, restream=[A, B, C])
    ids = [t["_id"] for t in stream["restream"]]
    url = f"/v1/livestreams/{stream['id']}/restream/{ids[1]}"
    response = await api_client.delete(url, headers=account.headers)
    assert response.status == 200
    assert await response.json() == stream["restream"][1]
    listed = await targets_of(api_client, account, stream["id"])
    assert [t["_id"] for t in listed] == [ids[0], ids[2]]

    await assert_error(await api_client.delete(url, headers=account.headers), 404, "not_found")
    response = await api_client.post(
        f"/v1/livestreams/{stream['id']}/restream", json=B, headers=account.headers
    )
    assert [fields(t) for t in await targets_of(api_client, account, stream["id"])] == [A, C, B]


async def test_unknown_targets_and_streams_are_404(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account, restream=[A])
    other = await create_stream(api_client, account, restream=[B])
    base = f"/v1/livestreams/{stream['id']}/restream"
    for target_id in ("0" * 24, "nope", other["restream"][0]["_id"]):
        response = await api_client.patch(
            f"{base}/{target_id}", json={"streamKey": "x"}, headers=account.headers
        )
        await assert_error(response, 404, "not_found")
        response = await api_client.delete(f"{base}/{target_id}", headers=account.headers)
        await assert_error(response, 404, "not_found")
    response = await api_client.post(
        f"/v1/livestreams/{'0' * 24}/restream", json=A, headers=account.headers
    )
    await assert_error(response, 404, "not_found")


async def test_changes_reach_the_relays_of_a_live_session(
    api_client: TestClient, account: AccountCredentials, unused_tcp_port: int
) -> None:
    closed = f"rtmp://127.0.0.1:{unused_tcp_port}"  # refuses at once: the relay keeps retrying
    first = {"url": f"{closed}/one", "streamKey": "k1"}
    stream = await create_stream(api_client, account, restream=[first])
    publisher = await go_live(api_client, stream["id"])
    outputs = publisher.path.outputs
    hub = publisher.path.hub
    hub.publish_metadata(b"\x02\x00\x0aonMetaData\x03\x00\x00\x09", {"videocodecid": 7.0})
    hub.publish_media(TAG_VIDEO, 0, b"\x17\x00\x00\x00\x00\x01\x64")
    hub.publish_media(TAG_AUDIO, 0, b"\xaf\x00\x12\x10")
    first_id = stream["restream"][0]["_id"]
    await eventually(lambda: first_id in outputs.restreams)
    base = f"/v1/livestreams/{stream['id']}/restream"

    response = await api_client.post(
        base, json={"url": f"{closed}/two", "streamKey": "k2"}, headers=account.headers
    )
    added = await response.json()
    assert set(outputs.restreams) == {first_id, added["_id"]}

    relay = outputs.restreams[added["_id"]]
    response = await api_client.patch(
        f"{base}/{added['_id']}", json={"streamKey": "k3"}, headers=account.headers
    )
    assert response.status == 200
    assert outputs.restreams[added["_id"]] is not relay
    assert outputs.restreams[added["_id"]].target.publish_url == f"{closed}/two/k3"

    response = await api_client.delete(f"{base}/{first_id}", headers=account.headers)
    assert response.status == 200
    assert set(outputs.restreams) == {added["_id"]}
    assert api_client.app[PATHS].get(stream["id"]) is publisher.path
