"""``/openapi.json`` stays true: it lists exactly the routed operations, and real responses
validate against its schemas (checked with ``tests/api/spec_support.py``)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient

from api.app import create_app
from config import Settings
from tests.api.conftest import TARGET, AccountCredentials, new_account
from tests.api.spec_support import (
    HTTP_METHODS,
    assert_matches_spec,
    check,
    documented_operations,
    fetch_document,
    routed_operations,
)
from tests.tls_support import make_certificate


async def test_every_route_is_documented_and_every_path_routed(api_client: TestClient) -> None:
    document = await fetch_document(api_client)
    assert document["openapi"].startswith("3.1")
    assert routed_operations(api_client.app) == documented_operations(document)


async def test_operation_ids_are_unique(api_client: TestClient) -> None:
    document = await fetch_document(api_client)
    ids = [
        item[method]["operationId"]
        for item in document["paths"].values()
        for method in item
        if method in HTTP_METHODS
    ]
    assert len(ids) == len(set(ids))


async def test_seed_request_matches_the_create_schema(api_client: TestClient) -> None:
    document = await fetch_document(api_client)
    seed = {"name": "Nickname for livestream", "record": True, "restream": [TARGET]}
    check(seed, {"$ref": "#/components/schemas/LiveStreamCreate"}, document)


async def test_responses_validate_against_the_spec(
    api_client: TestClient, account: AccountCredentials
) -> None:
    document = await fetch_document(api_client)
    client, headers = api_client, account.headers
    item = "/v1/livestreams/{id}"

    response = await client.post(
        "/v1/livestreams", json={"name": "x", "restream": [TARGET]}, headers=headers
    )
    stream = await assert_matches_spec(document, "post", "/v1/livestreams", response)
    url = f"/v1/livestreams/{stream['id']}"
    await assert_matches_spec(
        document, "get", "/v1/livestreams", await client.get("/v1/livestreams", headers=headers)
    )
    await assert_matches_spec(document, "get", item, await client.get(url, headers=headers))
    response = await client.patch(url, json={"record": True}, headers=headers)
    await assert_matches_spec(document, "patch", item, response)
    response = await client.post(url, json={"name": "y"}, headers=headers)
    await assert_matches_spec(document, "post", item, response)
    await assert_matches_spec(document, "delete", item, await client.delete(url, headers=headers))
    await assert_matches_spec(document, "get", "/healthz", await client.get("/healthz"))

    response = await client.post("/v1/livestreams", json={"name": 5}, headers=headers)
    await assert_matches_spec(document, "post", "/v1/livestreams", response)
    response = await client.get("/v1/livestreams")
    await assert_matches_spec(document, "get", "/v1/livestreams", response)
    await assert_matches_spec(document, "get", item, await client.get(url, headers=headers))
    response = await client.get(f"/live/{stream['id']}/index.m3u8")
    await assert_matches_spec(document, "get", "/live/{id}/index.m3u8", response)


async def test_lifecycle_restream_and_session_responses_validate(
    api_client: TestClient, account: AccountCredentials
) -> None:
    document = await fetch_document(api_client)
    client, headers = api_client, account.headers
    nine = [{"url": f"rtmp://t{i}.example.com/live", "streamKey": "k"} for i in range(9)]
    response = await client.post(
        "/v1/livestreams", json={"name": "x", "restream": nine}, headers=headers
    )
    stream = await assert_matches_spec(document, "post", "/v1/livestreams", response)
    url = f"/v1/livestreams/{stream['id']}"
    for action in ("reset-stream-key", "disable", "enable", "complete"):
        response = await client.post(f"{url}/{action}", headers=headers)
        await assert_matches_spec(document, "post", f"/v1/livestreams/{{id}}/{action}", response)
    response = await client.get("/v1/livestreams?status=idle&name=X", headers=headers)
    await assert_matches_spec(document, "get", "/v1/livestreams", response)

    restream, item = "/v1/livestreams/{id}/restream", "/v1/livestreams/{id}/restream/{targetId}"
    response = await client.post(f"{url}/restream", json=TARGET, headers=headers)
    target = await assert_matches_spec(document, "post", restream, response)
    response = await client.post(f"{url}/restream", json=TARGET, headers=headers)
    await assert_matches_spec(document, "post", restream, response)  # 409: ten already
    target_url = f"{url}/restream/{target['_id']}"
    response = await client.patch(target_url, json={"streamKey": "k2"}, headers=headers)
    await assert_matches_spec(document, "patch", item, response)
    await assert_matches_spec(
        document, "delete", item, await client.delete(target_url, headers=headers)
    )
    await assert_matches_spec(
        document, "delete", item, await client.delete(target_url, headers=headers)
    )
    response = await client.get(f"{url}/sessions", headers=headers)
    await assert_matches_spec(document, "get", "/v1/livestreams/{id}/sessions", response)


async def test_documented_patterns_refuse_what_the_api_refuses(api_client: TestClient) -> None:
    """Found by Schemathesis: strings valid by the document (a restream url of ``"0"``, a name
    of ``"\\x0c"``) were refused, so the document now says what the validators check."""
    schemas = (await fetch_document(api_client))["components"]["schemas"]
    url = schemas["RestreamTargetInput"]["properties"]["url"]["pattern"]
    for good in ("rtmp://a.example.com/live", "RTMPS://a.example.com:443/app/x?y=z"):
        assert re.search(url, good), good
    for bad in ("0", "http://a.example.com/live", "rtmp://a b", "rtmp://a\x01", "rtmp:/x"):
        assert not re.search(url, bad), bad
    assert schemas["RestreamTargetUpdate"]["properties"]["url"]["pattern"] == url
    for model in ("LiveStreamCreate", "LiveStreamUpdate"):
        name = schemas[model]["properties"]["name"]["pattern"]
        for good in ("x", " x ", "Nickname for livestream", "\u00e9"):
            assert re.search(name, good), good
        for bad in (" ", "\x0c\t", "\x1c", "a\x00b"):
            assert not re.search(name, bad), bad


async def test_session_limits_are_documented_as_bounded_integers(api_client: TestClient) -> None:
    schemas = (await fetch_document(api_client))["components"]["schemas"]
    create, update = schemas["LiveStreamCreate"], schemas["LiveStreamUpdate"]
    for field, low, high, default in [
        ("reconnectWindowSeconds", 0, 1800, 60),
        ("maxDurationSeconds", 60, 43200, 43200),
    ]:
        documented = create["properties"][field]
        assert (documented["type"], documented["minimum"], documented["maximum"]) == (
            "integer",
            low,
            high,
        )
        assert documented["default"] == default
        assert "default" not in update["properties"][field]
        assert update["properties"][field]["minimum"] == low


async def test_latency_mode_is_documented_in_requests_and_responses(
    api_client: TestClient,
) -> None:
    schemas = (await fetch_document(api_client))["components"]["schemas"]
    create = schemas["LiveStreamCreate"]["properties"]["latencyMode"]
    assert sorted(create["enum"]) == ["low", "standard"] and create["default"] == "low"
    update = schemas["LiveStreamUpdate"]["properties"]["latencyMode"]
    assert sorted(update["enum"]) == ["low", "standard"] and "default" not in update
    output = schemas["LiveStreamOutput"]
    assert "latencyMode" in output["required"]
    assert sorted(output["properties"]["latencyMode"]["enum"]) == ["low", "standard"]


async def test_streams_carry_the_rtmps_urls_when_rtmps_is_on(
    aiohttp_client: AiohttpClient, app_settings: Settings, tmp_path: Path
) -> None:
    files = make_certificate(tmp_path, "liverelay")
    settings = dataclasses.replace(
        app_settings,
        rtmps_port=0,
        tls_cert_file=str(files.cert),
        tls_key_file=str(files.key),
        public_rtmps_url="rtmps://testserver:1936",
    )
    client = await aiohttp_client(create_app(settings))
    account = await new_account(client)
    document = await fetch_document(client)
    response = await client.post("/v1/livestreams", json={"name": "x"}, headers=account.headers)
    stream = await assert_matches_spec(document, "post", "/v1/livestreams", response)
    assert stream["upstreamUrl"] == f"rtmp://testserver/live/{stream['streamKey']}"
    assert stream["secureUpstreamUrl"] == f"rtmps://testserver:1936/live/{stream['streamKey']}"
    assert stream["secureStreamUrl"] == "rtmps://testserver:1936/live"
    schemas = document["components"]["schemas"]
    assert "secureUpstreamUrl" in schemas["LiveStreamOutput"]["properties"]
    # Events leave out what holds the key: secureUpstreamUrl as upstreamUrl.
    event_stream = schemas["LiveStreamEventData"]["properties"]
    assert "secureStreamUrl" in event_stream
    assert "secureUpstreamUrl" not in event_stream and "upstreamUrl" not in event_stream
