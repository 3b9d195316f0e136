"""``renditions`` of ``/v1/livestreams``: create, update, every response, the grant, and the
validation of the ladder, on both databases."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from api.keys import AUTHORIZER
from tests.api.conftest import AccountCredentials, assert_error, create_stream

LADDER = ["source", "720p", "480p", "360p"]


async def test_a_new_stream_has_the_source_rendition_only(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account)
    assert stream["renditions"] == ["source"]
    grant = await api_client.app[AUTHORIZER].authorize_publish(stream["streamKey"], "c")
    assert grant.renditions == ("source",)


async def test_renditions_in_create_update_and_every_response(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account, renditions=LADDER)
    assert stream["renditions"] == LADDER
    url = f"/v1/livestreams/{stream['id']}"
    response = await api_client.get(url, headers=account.headers)
    assert (await response.json())["renditions"] == LADDER
    response = await api_client.get("/v1/livestreams", headers=account.headers)
    assert [s["renditions"] for s in (await response.json())["data"]] == [LADDER]
    response = await api_client.patch(url, json={"name": "n"}, headers=account.headers)
    assert (await response.json())["renditions"] == LADDER, "unchanged unless given"
    authorizer = api_client.app[AUTHORIZER]
    grant = await authorizer.authorize_publish(stream["streamKey"], "c")
    assert grant.renditions == tuple(LADDER)
    response = await api_client.patch(
        url, json={"renditions": ["source", "240p"]}, headers=account.headers
    )
    assert response.status == 200 and (await response.json())["renditions"] == ["source", "240p"]
    grant = await authorizer.authorize_publish(stream["streamKey"], "c")
    assert grant.renditions == ("source", "240p")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "at least 1 item"),
        (["720p"], '"source" must be the first rendition'),
        (["480p", "source"], '"source" must be the first rendition'),
        (["source", "4k"], "unknown rendition '4k'"),
        (["source", "360p", "360p"], "rendition '360p' is listed twice"),
        ("source", "valid list"),
        (None, "valid list"),
        (["source", 720], "valid string"),
    ],
)
async def test_a_ladder_is_source_first_then_known_rungs_once(
    api_client: TestClient, account: AccountCredentials, value: object, message: str
) -> None:
    response = await api_client.post(
        "/v1/livestreams", json={"name": "x", "renditions": value}, headers=account.headers
    )
    body = await assert_error(response, 400, "validation_error")
    assert body["details"][0]["field"].startswith("renditions")
    assert message in body["details"][0]["message"]
    stream = await create_stream(api_client, account)
    response = await api_client.patch(
        f"/v1/livestreams/{stream['id']}", json={"renditions": value}, headers=account.headers
    )
    await assert_error(response, 400, "validation_error")
