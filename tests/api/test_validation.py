"""Bad requests get 4xx JSON in the standard shape, with JSON field paths; nothing is written."""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient

from api.app import create_app
from config import Settings
from tests.api.conftest import (
    TARGET,
    AccountCredentials,
    assert_error,
    create_stream,
    new_account,
)


async def stream_count(client: TestClient, account: AccountCredentials) -> int:
    response = await client.get("/v1/livestreams?perPage=100", headers=account.headers)
    return len((await response.json())["data"])


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["name"]),
        ({"name": ""}, ["name"]),
        ({"name": "   "}, ["name"]),
        ({"name": "x" * 257}, ["name"]),
        ({"name": 5}, ["name"]),
        ({"name": None}, ["name"]),
        ({"name": "ok", "record": "yes"}, ["record"]),
        ({"name": "ok", "record": 1}, ["record"]),
        ({"name": "ok", "color": "red"}, ["color"]),
        ({"name": "ok", "restream": {}}, ["restream"]),
        ({"name": "ok", "restream": ["rtmp://a/b"]}, ["restream[0]"]),
        (
            {"name": "ok", "restream": [{"url": "http://a.example.com/x", "streamKey": "k"}]},
            ["restream[0].url"],
        ),
        (
            {"name": "ok", "restream": [{"url": "rtmp:///nohost", "streamKey": "k"}]},
            ["restream[0].url"],
        ),
        (
            {"name": "ok", "restream": [{"url": "rtmp://a.example.com/x", "streamKey": ""}]},
            ["restream[0].streamKey"],
        ),
        (
            {"name": "ok", "restream": [{"url": "rtmp://a.example.com/x"}]},
            ["restream[0].streamKey"],
        ),
        ({"name": "ok", "restream": [TARGET, {**TARGET, "extra": 1}]}, ["restream[1].extra"]),
        ({"name": "ok", "restream": [TARGET] * 11}, ["restream"]),
        ({"name": 5, "record": "yes"}, ["name", "record"]),
    ],
)
async def test_create_validation_errors(
    api_client: TestClient, account: AccountCredentials, body: Any, fields: list[str]
) -> None:
    response = await api_client.post("/v1/livestreams", json=body, headers=account.headers)
    error = await assert_error(response, 400, "validation_error", fields)
    assert all(d["message"] for d in error["details"])
    assert await stream_count(api_client, account) == 0


async def test_validation_messages_say_what_is_wrong(
    api_client: TestClient, account: AccountCredentials
) -> None:
    body = {"name": "ok", "restream": [{"url": "http://a.example.com/x", "streamKey": "k"}]}
    response = await api_client.post("/v1/livestreams", json=body, headers=account.headers)
    error = await assert_error(response, 400, "validation_error")
    assert error["details"] == [
        {"field": "restream[0].url", "message": "url must start with rtmp:// or rtmps://"}
    ]


@pytest.mark.parametrize(
    "url",
    [
        "rtmp://127.0.0.1/live",
        "rtmp://localhost/live",
        "rtmp://10.0.0.5:1935/live",
        "rtmp://192.168.1.1/live",
        "rtmp://169.254.169.254/latest",
        "rtmp://0.0.0.0/live",
        "rtmp://[::1]/live",
        "rtmp://2130706433/live",
    ],
)
async def test_private_targets_refused_by_default(
    api_client: TestClient, account: AccountCredentials, url: str
) -> None:
    body = {"name": "ok", "restream": [{"url": url, "streamKey": "k"}]}
    response = await api_client.post("/v1/livestreams", json=body, headers=account.headers)
    error = await assert_error(response, 400, "validation_error", ["restream[0].url"])
    assert "private" in error["details"][0]["message"]


async def test_private_targets_allowed_by_setting(
    aiohttp_client: AiohttpClient, app_settings: Settings
) -> None:
    settings = dataclasses.replace(app_settings, allow_private_targets=True)
    client = await aiohttp_client(create_app(settings))
    account = await new_account(client)
    target = {"url": "rtmp://127.0.0.1:1935/live", "streamKey": "k"}
    stream = await create_stream(client, account, restream=[target])
    assert stream["restream"][0]["url"] == target["url"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"name": "x"', "request body is not valid JSON"),
        (b"", "request body is not valid JSON"),
        (b"name=x", "request body is not valid JSON"),
        (b"\xff\xfe\x00", "request body is not valid JSON"),
        (b"[" * 100_000, "request body is not valid JSON"),
        (b'[{"name": "x"}]', "request body must be a JSON object"),
        (b'"x"', "request body must be a JSON object"),
        (b"null", "request body must be a JSON object"),
    ],
)
async def test_body_must_be_a_json_object(
    api_client: TestClient, account: AccountCredentials, data: bytes, message: str
) -> None:
    headers = {**account.headers, "Content-Type": "application/json"}
    response = await api_client.post("/v1/livestreams", data=data, headers=headers)
    error = await assert_error(response, 400, "invalid_json", [])
    assert error["message"] == message
    assert await stream_count(api_client, account) == 0


async def test_oversized_body_is_413_json(
    api_client: TestClient, account: AccountCredentials, app_settings: Settings
) -> None:
    body = json.dumps({"name": "x" * (app_settings.max_request_bytes + 1)}).encode()
    headers = {**account.headers, "Content-Type": "application/json"}
    response = await api_client.post("/v1/livestreams", data=io.BytesIO(body), headers=headers)
    error = await assert_error(response, 413, "payload_too_large")
    assert str(app_settings.max_request_bytes) in error["message"]
    assert await stream_count(api_client, account) == 0


async def test_update_validation_writes_nothing(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account, restream=[TARGET])
    url = f"/v1/livestreams/{stream['id']}"
    bad = {
        "name": "new name",
        "restream": [TARGET, {"url": "ftp://x.example.com", "streamKey": "k"}],
    }
    for method in (api_client.patch, api_client.post):
        response = await method(url, json=bad, headers=account.headers)
        await assert_error(response, 400, "validation_error", ["restream[1].url"])
    for body, fields in [
        ({"name": None}, ["name"]),
        ({"record": None}, ["record"]),
        ({"restream": None}, ["restream"]),
        ({"streamKey": "mine"}, ["streamKey"]),
        ({"id": "0" * 24}, ["id"]),
    ]:
        response = await api_client.patch(url, json=body, headers=account.headers)
        await assert_error(response, 400, "validation_error", fields)
    headers = {**account.headers, "Content-Type": "application/json"}
    response = await api_client.patch(url, data=b"[]", headers=headers)
    await assert_error(response, 400, "invalid_json", [])
    response = await api_client.get(url, headers=account.headers)
    assert await response.json() == stream


async def test_unknown_route_and_method_are_json(
    api_client: TestClient, account: AccountCredentials
) -> None:
    await assert_error(await api_client.get("/nope"), 404, "not_found")
    await assert_error(await api_client.get("/v1/nope", headers=account.headers), 404, "not_found")
    response = await api_client.put("/v1/livestreams", json={}, headers=account.headers)
    await assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]
    await assert_error(await api_client.delete("/healthz"), 405, "method_not_allowed")


async def test_request_id_is_echoed_or_generated(api_client: TestClient) -> None:
    response = await api_client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert response.headers["X-Request-Id"] == "abc-123"
    response = await api_client.get("/healthz", headers={"X-Request-Id": "bad id\t<script>"})
    assert response.headers["X-Request-Id"] != "bad id\t<script>"
    assert len(response.headers["X-Request-Id"]) == 32
    response = await api_client.get("/nope")
    body = await response.json()
    assert body["requestId"] == response.headers["X-Request-Id"]


async def test_unexpected_exception_is_logged_500_json(
    aiohttp_client: AiohttpClient, app_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(app_settings)

    async def explode(request: web.Request) -> web.Response:
        raise RuntimeError("kaboom")

    app.router.add_get("/explode", explode)
    client = await aiohttp_client(app)
    response = await client.get("/explode")
    error = await assert_error(response, 500, "internal_error")
    assert "kaboom" not in error["message"]
    assert "kaboom" in caplog.text and "Traceback" in caplog.text


async def test_healthz(api_client: TestClient) -> None:
    response = await api_client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}
