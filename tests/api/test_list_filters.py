"""``GET /v1/livestreams?status=&name=``: filters applied by the query, so paging counts only
what matches, on both databases."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.api.conftest import AccountCredentials, MakeAccount, assert_error, create_stream, go_live


async def listing(client: TestClient, account: AccountCredentials, query: str) -> dict[str, Any]:
    response = await client.get(f"/v1/livestreams?{query}", headers=account.headers)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def names(body: dict[str, Any]) -> list[str]:
    return [s["name"] for s in body["data"]]


async def test_status_filter_pages_over_matching_streams_only(
    api_client: TestClient, make_account: MakeAccount
) -> None:
    account, other = await make_account("me"), await make_account("other")
    streams = [await create_stream(api_client, account, name=f"s{i}") for i in range(5)]
    await go_live(api_client, streams[1]["id"])
    waiting = await go_live(api_client, streams[2]["id"])
    await waiting.path.leave(waiting, clean=False, reason="timed_out")  # in its reconnect window
    response = await api_client.post(
        f"/v1/livestreams/{streams[3]['id']}/disable", headers=account.headers
    )
    assert response.status == 200
    theirs = await create_stream(api_client, other, name="theirs")
    await go_live(api_client, theirs["id"])

    live = await listing(api_client, account, "status=live&perPage=1")
    assert live["pageInfo"] == {"currentPage": 1, "perPage": 1, "lastPage": 2}
    assert names(live) == ["s2"]
    assert names(await listing(api_client, account, "status=live&page=2&perPage=1")) == ["s1"]
    assert {s["status"] for s in (await listing(api_client, account, "status=live"))["data"]} == {
        "live"
    }
    assert names(await listing(api_client, account, "status=idle")) == ["s4", "s0"]
    assert names(await listing(api_client, account, "status=disabled")) == ["s3"]
    assert len((await listing(api_client, account, ""))["data"]) == 5
    assert names(await listing(api_client, other, "status=live")) == ["theirs"]
    assert names(await listing(api_client, other, "status=idle")) == []


async def test_a_disabled_stream_is_not_listed_as_live(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account, name="x")
    await go_live(api_client, stream["id"])
    await api_client.post(f"/v1/livestreams/{stream['id']}/disable", headers=account.headers)
    assert names(await listing(api_client, account, "status=live")) == []
    assert names(await listing(api_client, account, "status=disabled")) == ["x"]


async def test_name_filter_is_a_case_insensitive_substring(
    api_client: TestClient, account: AccountCredentials
) -> None:
    for name in ("Morning Show", "evening SHOW", "100% real", "a_b", "ab", "other"):
        await create_stream(api_client, account, name=name)

    assert names(await listing(api_client, account, "name=show")) == [
        "evening SHOW",
        "Morning Show",
    ]
    assert names(await listing(api_client, account, "name=MORNING%20s")) == ["Morning Show"]
    assert names(await listing(api_client, account, "name=%25")) == ["100% real"]
    assert names(await listing(api_client, account, "name=_")) == ["a_b"]
    assert names(await listing(api_client, account, "name=nothing")) == []
    assert len((await listing(api_client, account, "name="))["data"]) == 6
    body = await listing(api_client, account, "name=show&status=idle&perPage=1")
    assert body["pageInfo"]["lastPage"] == 2


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=bogus", "status"),
        ("status=", "status"),
        ("status=LIVE", "status"),
        ("name=" + "x" * 257, "name"),
        ("name=a%00b", "name"),
    ],
)
async def test_bad_filters_are_refused(
    api_client: TestClient, account: AccountCredentials, query: str, field: str
) -> None:
    response = await api_client.get(f"/v1/livestreams?{query}", headers=account.headers)
    await assert_error(response, 400, "validation_error", [field])
