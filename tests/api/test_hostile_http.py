"""Hostile HTTP input: every case is a 4xx JSON error (never a 500) and nothing is written."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.api.conftest import TARGET, AccountCredentials, assert_error, create_stream


def b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def count(client: TestClient, account: AccountCredentials) -> int:
    response = await client.get("/v1/livestreams?perPage=100", headers=account.headers)
    return len((await response.json())["data"])


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "\\ud800"}',  # lone surrogate: not encodable text
        b'{"name": "a\\u0000b"}',  # NUL: PostgreSQL text cannot hold it
        b'{"name": "x", "record": 1e999}',
        b'{"name": "x", "record": NaN}',
        b'{"name": "x", "restream": [' + b",".join([b"{}"] * 10_000) + b"]}",
        b'{"name": "x", "restream": [{"url": ' + b"[" * 5000 + b"]" * 5000 + b"}]}",
        b'{"name": {"$gt": ""}}',
        b'{"name": "x", "restream": [{"url": "rtmp://a.example.com/\\u0000", "streamKey": "k"}]}',
        b'{"name": "x", "restream": [{"url": "rtmp://a.example.com/' + b"a" * 5000 + b'", '
        b'"streamKey": "k"}]}',
        b'{"name": "x", "restream": [{"url": "rtmp://a.example.com/x", "streamKey": "'
        + b"k" * 5000
        + b'"}]}',
    ],
)
async def test_hostile_bodies_get_a_4xx_and_write_nothing(
    api_client: TestClient, account: AccountCredentials, raw: bytes
) -> None:
    headers = {**account.headers, "Content-Type": "application/json"}
    response = await api_client.post("/v1/livestreams", data=raw, headers=headers)
    assert 400 <= response.status < 500, await response.text()
    body = await response.json()
    assert body["status"] == response.status and body["message"]
    assert await count(api_client, account) == 0


async def test_hostile_update_leaves_the_stream_untouched(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account, restream=[TARGET])
    url = f"/v1/livestreams/{stream['id']}"
    bad = {
        "name": "renamed",
        "restream": [TARGET, {"url": "ftp://x.example.com", "streamKey": "k"}],
    }
    response = await api_client.patch(url, json=bad, headers=account.headers)
    await assert_error(response, 400, "validation_error", ["restream[1].url"])
    after = await (await api_client.get(url, headers=account.headers)).json()
    assert after == stream  # no partial write: name and targets unchanged


@pytest.mark.parametrize(
    "name", ["Ünïcödé 名前 🎥", "\u202eRTL override", "tab\tand newline\nin name", "a" * 256]
)
async def test_unusual_but_valid_names_round_trip(
    api_client: TestClient, account: AccountCredentials, name: str
) -> None:
    stream = await create_stream(api_client, account, name=name)
    fetched = await api_client.get(f"/v1/livestreams/{stream['id']}", headers=account.headers)
    assert (await fetched.json())["name"] == name


async def test_rs256_token_is_refused(api_client: TestClient, account: AccountCredentials) -> None:
    claims = {"apikey": account.apikey, "exp": int(time.time()) + 60}
    token = f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{b64(claims)}.{'A' * 342}"
    response = await api_client.get("/v1/livestreams", headers={"Authorization": token})
    await assert_error(response, 401, "unauthorized")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/livestreams/" + "0" * 23,
        "/v1/livestreams/" + "g" * 24,
        "/v1/livestreams/../../etc/passwd",
        "/v1/livestreams/%00",
        "/v1/livestreams?page=-1",
        "/v1/livestreams?perPage=100000",
        "/v1/livestreams?page=1e9999",
    ],
)
async def test_hostile_paths_and_queries(
    api_client: TestClient, account: AccountCredentials, path: str
) -> None:
    response = await api_client.get(path, headers=account.headers)
    assert response.status in (400, 404), await response.text()
    assert (await response.json())["status"] == response.status
