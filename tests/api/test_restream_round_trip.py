"""Restream items as the API returns them can be sent back, on both databases: ``_id`` (or
``id``) keeps a target's identity (and a live relay untouched), the relay state fields are
ignored, and anything else unknown is still refused."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from config import Settings
from ingest.flv import TAG_AUDIO, TAG_VIDEO
from tests.api.conftest import HEX24, AccountCredentials, assert_error, create_stream, go_live
from tests.polling import eventually

A = {"url": "rtmp://a.example.com/live", "streamKey": "ka"}
B = {"url": "rtmps://b.example.com:443/app", "streamKey": "kb"}
C = {"url": "rtmp://c.example.com/live", "streamKey": "kc"}
READ_ONLY = {"status": "live", "lastError": "refused", "since": "2026-01-02T03:04:05.000Z"}


@pytest.fixture
def app_settings(app_settings: Settings) -> Settings:
    """Loopback targets allowed, so a live relay can fail fast without leaving the machine."""
    return replace(app_settings, allow_private_targets=True, output_backoff_max_seconds=1)


async def read(client: TestClient, account: AccountCredentials, stream_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/livestreams/{stream_id}", headers=account.headers)
    assert response.status == 200
    stream: dict[str, Any] = await response.json()
    return stream


async def patch_restream(
    client: TestClient, account: AccountCredentials, stream_id: str, items: list[dict[str, Any]]
) -> Any:
    return await client.patch(
        f"/v1/livestreams/{stream_id}", json={"restream": items}, headers=account.headers
    )


async def test_every_restream_item_has_id_and_underscore_id(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account, restream=[A, B])
    base = f"/v1/livestreams/{stream['id']}"
    added = await (
        await api_client.post(f"{base}/restream", json=C, headers=account.headers)
    ).json()
    changed = await (
        await api_client.patch(
            f"{base}/restream/{added['_id']}", json={"streamKey": "kc2"}, headers=account.headers
        )
    ).json()
    listed = await (await api_client.get("/v1/livestreams", headers=account.headers)).json()
    read_back = await read(api_client, account, stream["id"])
    removed = await (
        await api_client.delete(f"{base}/restream/{added['_id']}", headers=account.headers)
    ).json()
    items = [
        *stream["restream"],
        added,
        changed,
        *listed["data"][0]["restream"],
        *read_back["restream"],
        removed,
    ]
    for item in items:
        assert HEX24.match(item["_id"]) and item["id"] == item["_id"], item


async def test_a_restream_list_read_with_get_can_be_sent_back(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account, restream=[A, B])
    read_back = await read(api_client, account, stream["id"])
    response = await patch_restream(api_client, account, stream["id"], read_back["restream"])
    assert response.status == 200, await response.text()
    assert (await response.json())["restream"] == read_back["restream"]

    # read-only fields with any state are ignored; `id` alone keeps the identity too
    items = [{**t, **READ_ONLY, "retries": 3} for t in read_back["restream"]]
    del items[1]["_id"]
    response = await patch_restream(api_client, account, stream["id"], items[::-1])
    assert response.status == 200, await response.text()
    targets = (await response.json())["restream"]
    assert [t["_id"] for t in targets] == [t["_id"] for t in read_back["restream"]][::-1]
    assert targets[0]["status"] == "idle" and targets[0]["retries"] == 0


async def test_an_item_with_its_id_keeps_the_id_when_its_url_or_key_change(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account, restream=[A, B])
    first, second = stream["restream"]
    items = [{**first, "streamKey": "ka2"}, {**second, "url": C["url"]}, A]
    response = await patch_restream(api_client, account, stream["id"], items)
    assert response.status == 200, await response.text()
    targets = (await response.json())["restream"]
    assert [(t["_id"], t["url"], t["streamKey"]) for t in targets[:2]] == [
        (first["_id"], A["url"], "ka2"),
        (second["_id"], C["url"], "kb"),
    ]
    assert targets[2]["_id"] not in (first["_id"], second["_id"])
    assert (targets[2]["url"], targets[2]["streamKey"]) == (A["url"], A["streamKey"])
    assert (await read(api_client, account, stream["id"]))["restream"] == targets


async def test_an_item_without_id_still_matches_an_identical_target(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account, restream=[A, B])
    response = await patch_restream(api_client, account, stream["id"], [B, stream["restream"][0]])
    targets = (await response.json())["restream"]
    assert [t["_id"] for t in targets] == [t["_id"] for t in stream["restream"]][::-1]


async def test_ids_that_are_not_the_streams_targets_are_refused(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account, restream=[A, B])
    other = await create_stream(api_client, account, restream=[C])
    first, second = stream["restream"]
    foreign = other["restream"][0]["_id"]
    for items, field in [
        ([{**A, "_id": "0" * 24}], "restream[0]._id"),
        ([first, {**C, "_id": foreign}], "restream[1]._id"),
        ([{**C, "id": foreign}], "restream[0].id"),
        ([first, {**B, "_id": first["_id"]}], "restream[1]._id"),
        ([{**first, "id": second["_id"]}], "restream[0].id"),
        ([{**A, "_id": "nope"}], "restream[0]._id"),
        ([{**A, "_id": None}], "restream[0]._id"),
        ([{**first, "extra": 1}], "restream[0].extra"),
    ]:
        response = await patch_restream(api_client, account, stream["id"], items)
        error = await assert_error(response, 400, "validation_error", [field])
        assert error["details"][0]["message"]
    assert (await read(api_client, account, stream["id"]))["restream"] == stream["restream"]

    response = await api_client.post(
        "/v1/livestreams", json={"name": "copy", "restream": [first]}, headers=account.headers
    )
    await assert_error(response, 400, "validation_error", ["restream[0]._id"])


async def test_the_target_routes_take_items_as_returned(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account, restream=[A, B])
    first, second = stream["restream"]
    base = f"/v1/livestreams/{stream['id']}/restream"

    response = await api_client.patch(
        f"{base}/{first['_id']}",
        json={**first, **READ_ONLY, "streamKey": "ka2"},
        headers=account.headers,
    )
    assert response.status == 200, await response.text()
    assert await response.json() == {**first, "streamKey": "ka2"}
    for body, field in [
        ({**first, "_id": second["_id"], "id": second["_id"]}, "_id"),
        ({"streamKey": "x", "id": second["_id"]}, "id"),
        ({**first, "id": second["_id"]}, "id"),
        ({**first, "extra": 1}, "extra"),
    ]:
        response = await api_client.patch(
            f"{base}/{first['_id']}", json=body, headers=account.headers
        )
        await assert_error(response, 400, "validation_error", [field])

    added = {k: v for k, v in second.items() if k not in ("_id", "id")}
    response = await api_client.post(base, json={**added, "url": C["url"]}, headers=account.headers)
    assert response.status == 201, await response.text()
    assert (await response.json())["_id"] not in (first["_id"], second["_id"])
    response = await api_client.post(base, json=second, headers=account.headers)
    await assert_error(response, 400, "validation_error", ["_id"])
    assert len((await read(api_client, account, stream["id"]))["restream"]) == 3


async def test_sending_a_live_streams_list_back_leaves_its_relays_running(
    api_client: TestClient, account: AccountCredentials, unused_tcp_port: int
) -> None:
    closed = f"rtmp://127.0.0.1:{unused_tcp_port}"  # refuses at once: the relay keeps retrying
    one = {"url": f"{closed}/one", "streamKey": "k1"}
    two = {"url": f"{closed}/two", "streamKey": "k2"}
    stream = await create_stream(api_client, account, restream=[one, two])
    publisher = await go_live(api_client, stream["id"])
    outputs = publisher.path.outputs
    hub = publisher.path.hub
    hub.publish_metadata(b"\x02\x00\x0aonMetaData\x03\x00\x00\x09", {"videocodecid": 7.0})
    hub.publish_media(TAG_VIDEO, 0, b"\x17\x00\x00\x00\x00\x01\x64")
    hub.publish_media(TAG_AUDIO, 0, b"\xaf\x00\x12\x10")
    ids = [t["_id"] for t in stream["restream"]]
    await eventually(lambda: set(outputs.restreams) == set(ids))
    relays = dict(outputs.restreams)

    read_back = await read(api_client, account, stream["id"])
    assert read_back["status"] == "live"
    response = await patch_restream(api_client, account, stream["id"], read_back["restream"])
    assert response.status == 200, await response.text()
    assert all(outputs.restreams[i] is relays[i] for i in ids)

    items = [read_back["restream"][0], {**read_back["restream"][1], "streamKey": "k3"}]
    response = await patch_restream(api_client, account, stream["id"], items)
    assert response.status == 200, await response.text()
    assert [t["_id"] for t in (await response.json())["restream"]] == ids
    assert outputs.restreams[ids[0]] is relays[ids[0]]
    assert outputs.restreams[ids[1]] is not relays[ids[1]]
    assert outputs.restreams[ids[1]].target.publish_url == f"{closed}/two/k3"
