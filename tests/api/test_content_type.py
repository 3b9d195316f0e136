"""Request bodies are JSON: another ``Content-Type`` gets 415 in the standard error shape on
every route that takes a body and changes nothing; routes without a body need no type."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.api.conftest import TARGET, AccountCredentials, assert_error, create_stream
from tests.api.spec_support import HTTP_METHODS, assert_matches_spec, fetch_document

REFUSED = [
    "text/plain",
    "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    "application/json; charset=latin-1",
    "application/jsonp",
    "text/json",
]
ACCEPTED = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json;charset=UTF-8",
    "Application/JSON",
    "application/merge-patch+json",
]


async def body_routes(
    client: TestClient, account: AccountCredentials
) -> list[tuple[str, str, dict[str, Any]]]:
    """Every route that takes a body, with a valid body for it."""
    stream = await create_stream(client, account, restream=[TARGET])
    item = f"/v1/livestreams/{stream['id']}"
    target = f"{item}/restream/{stream['restream'][0]['_id']}"
    hook = {"url": "https://hooks.example.com/in", "events": ["*"]}
    return [
        ("POST", "/v1/livestreams", {"name": "typed"}),
        ("PATCH", item, {"name": "typed"}),
        ("POST", item, {"name": "typed"}),
        ("POST", f"{item}/restream", {**TARGET, "streamKey": "typed"}),
        ("PATCH", target, {"streamKey": "typed"}),
        ("POST", "/v1/webhooks", hook),
    ]


async def snapshot(client: TestClient, account: AccountCredentials) -> list[Any]:
    streams = await (await client.get("/v1/livestreams", headers=account.headers)).json()
    hooks = await (await client.get("/v1/webhooks", headers=account.headers)).json()
    return [streams["data"], hooks["data"]]


@pytest.mark.parametrize("content_type", REFUSED)
async def test_a_body_of_another_type_is_415(
    api_client: TestClient, account: AccountCredentials, content_type: str
) -> None:
    routes = await body_routes(api_client, account)
    before = await snapshot(api_client, account)
    headers = {**account.headers, "Content-Type": content_type}
    for method, path, body in routes:
        response = await api_client.request(
            method, path, data=json.dumps(body).encode(), headers=headers
        )
        error = await assert_error(response, 415, "unsupported_media_type", [])
        assert "application/json" in error["message"], (method, path)
    assert await snapshot(api_client, account) == before


@pytest.mark.parametrize("content_type", ACCEPTED)
async def test_json_bodies_are_accepted_with_or_without_a_charset(
    api_client: TestClient, account: AccountCredentials, content_type: str
) -> None:
    headers = {**account.headers, "Content-Type": content_type}
    for method, path, body in await body_routes(api_client, account):
        response = await api_client.request(
            method, path, data=json.dumps(body).encode(), headers=headers
        )
        assert response.status in (200, 201), (method, path, await response.text())


async def test_a_json_body_without_a_content_type_is_accepted(
    api_client: TestClient, account: AccountCredentials
) -> None:
    response = await api_client.post(
        "/v1/livestreams",
        data=json.dumps({"name": "untyped"}).encode(),
        headers=account.headers,
        skip_auto_headers=["Content-Type"],
    )
    assert response.status == 201, await response.text()
    assert (await response.json())["name"] == "untyped"


async def test_routes_without_a_body_need_no_content_type(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account)
    item = f"/v1/livestreams/{stream['id']}"
    for action in ("disable", "enable", "complete", "reset-stream-key"):
        response = await api_client.post(
            f"{item}/{action}", headers=account.headers, skip_auto_headers=["Content-Type"]
        )
        assert response.status == 200, (action, await response.text())
        assert "Content-Type" not in response.request_info.headers
    response = await api_client.delete(item, headers=account.headers)
    assert response.status == 200


async def test_every_operation_with_a_body_documents_415(
    api_client: TestClient, account: AccountCredentials
) -> None:
    document = await fetch_document(api_client)
    with_body = [
        (method, path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS and "requestBody" in operation
    ]
    assert len(with_body) == 7  # six /v1 operations and the console sign-in
    for method, path in with_body:
        assert "415" in document["paths"][path][method]["responses"], (method, path)
    headers = {**account.headers, "Content-Type": "text/plain"}
    response = await api_client.post("/v1/livestreams", data=b'{"name": "x"}', headers=headers)
    await assert_matches_spec(document, "post", "/v1/livestreams", response)
