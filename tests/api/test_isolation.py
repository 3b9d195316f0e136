"""Tenant isolation: another account gets a 404 on every route that addresses one account's
object, and changes nothing. The routes come from the app's router, so a new route fails here
until it has a case (or is listed as not belonging to an account)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api import queries
from api.keys import DB_SESSIONMAKER
from tests.api.conftest import TARGET, AccountCredentials, MakeAccount, assert_error, create_stream
from tests.api.spec_support import routed_operations

ACCOUNT_ROUTES: dict[tuple[str, str], dict[str, Any] | None] = {
    ("get", "/v1/livestreams/{id}"): None,
    ("patch", "/v1/livestreams/{id}"): {"name": "mine now"},
    ("post", "/v1/livestreams/{id}"): {"record": True},
    ("delete", "/v1/livestreams/{id}"): None,
    ("post", "/v1/livestreams/{id}/reset-stream-key"): None,
    ("post", "/v1/livestreams/{id}/disable"): None,
    ("post", "/v1/livestreams/{id}/enable"): None,
    ("post", "/v1/livestreams/{id}/complete"): None,
    ("post", "/v1/livestreams/{id}/restream"): TARGET,
    ("patch", "/v1/livestreams/{id}/restream/{targetId}"): {"streamKey": "mine"},
    ("delete", "/v1/livestreams/{id}/restream/{targetId}"): None,
    ("get", "/v1/livestreams/{id}/sessions"): None,
    ("get", "/v1/livestreams/{id}/recordings"): None,
    ("delete", "/v1/livestreams/{id}/recordings/{recordingId}"): None,
    ("get", "/v1/webhooks/{id}"): None,
    ("delete", "/v1/webhooks/{id}"): None,
    ("get", "/v1/webhooks/{id}/deliveries"): None,
    ("get", "/v1/signing-keys/{id}"): None,
    ("delete", "/v1/signing-keys/{id}"): None,
}
"""Every route that addresses one account's object, with the body the other account sends
(valid, so that only ownership can refuse it)."""

NOT_ONE_ACCOUNTS: dict[tuple[str, str], str] = {
    ("post", "/v1/livestreams"): "creates in the caller's account",
    ("get", "/v1/livestreams"): "lists the caller's streams (checked below)",
    ("post", "/v1/webhooks"): "creates in the caller's account",
    ("get", "/v1/webhooks"): "lists the caller's webhooks (checked below)",
    ("post", "/v1/signing-keys"): "creates in the caller's account",
    ("get", "/v1/signing-keys"): "lists the caller's keys (test_signed_playback.py)",
    ("get", "/healthz"): "public",
    ("get", "/readyz"): "public",
    ("get", "/metrics"): "only with LIVERELAY_METRICS_TOKEN (a bearer token), no account data",
    ("get", "/openapi.json"): "public",
    ("post", "/console/session"): "signs in the account the credentials name",
    ("get", "/console/session"): "the cookie's own session (test_console_session.py)",
    ("delete", "/console/session"): "ends the cookie's own session (test_console_session.py)",
    ("get", "/console"): "public static console",
    ("get", "/console/"): "public static console",
    ("get", "/console/{name}"): "public static console",
    ("get", "/console/vendor/hls.min.js"): "public static console",
    **{
        (method, path): "playback by an unguessable id; a signed stream's needs a token "
        "for that stream signed with a key of its account (test_signed_playback.py)"
        for method in ("get", "head")
        for path in (
            "/live/{id}/index.m3u8",
            "/live/{id}/multivariant.m3u8",
            "/live/{id}/{segment}",
            "/live/{id}/storage/index.m3u8",
            "/recordings/{recordingId}/index.m3u8",
            "/recordings/{recordingId}/{segment}",
            *(f"/live/{{id}}/thumbnail.{kind}" for kind in ("jpg", "png")),
            *(f"/recordings/{{recordingId}}/thumbnail.{kind}" for kind in ("jpg", "png")),
        )
    },
}


async def owned_objects(client: TestClient, owner: AccountCredentials) -> dict[str, str]:
    """A stream with a restream target and a recording, and a webhook."""
    stream = await create_stream(client, owner, restream=[TARGET])
    async with client.app[DB_SESSIONMAKER]() as session, session.begin():
        recording = await queries.create_recording(session, stream["id"], datetime.now(UTC))
        recording.status = "ready"
    ids = {
        "stream": stream["id"],
        "target": stream["restream"][0]["_id"],
        "recording": recording.id,
    }
    response = await client.post(
        "/v1/webhooks",
        json={"url": "https://hooks.example.com/liverelay", "events": ["*"]},
        headers=owner.headers,
    )
    assert response.status == 201, await response.text()
    ids["webhook"] = (await response.json())["id"]
    response = await client.post("/v1/signing-keys", headers=owner.headers)
    assert response.status == 201, await response.text()
    ids["signing_key"] = (await response.json())["id"]
    return ids


def concrete(path: str, ids: dict[str, str]) -> str:
    """``path`` with the owner's ids in place of its parameters."""
    owned = ids["webhook"] if path.startswith("/v1/webhooks/") else ids["stream"]
    if path.startswith("/v1/signing-keys/"):
        owned = ids["signing_key"]
    path = path.replace("{id}", owned).replace("{targetId}", ids["target"])
    return path.replace("{recordingId}", ids["recording"])


async def test_every_route_is_classified(api_client: TestClient) -> None:
    routed = routed_operations(api_client.app)
    classified = set(ACCOUNT_ROUTES) | set(NOT_ONE_ACCOUNTS)
    unclassified = routed - classified
    assert not unclassified, (
        f"routes without a tenant isolation case in {__name__}: {sorted(unclassified)}"
    )
    missing = set(ACCOUNT_ROUTES) - routed  # each case below must run, never skip
    assert not missing, f"isolation cases for routes the app lacks: {sorted(missing)}"


async def alice_sees(client: TestClient, alice: AccountCredentials, ids: dict[str, str]) -> list:
    """Everything the owner can read about the objects."""
    stream = f"/v1/livestreams/{ids['stream']}"
    urls = [stream, f"{stream}/recordings", f"{stream}/sessions", f"/v1/webhooks/{ids['webhook']}"]
    urls.append(f"/v1/signing-keys/{ids['signing_key']}")
    return [await (await client.get(url, headers=alice.headers)).json() for url in urls]


@pytest.mark.parametrize("route", sorted(ACCOUNT_ROUTES), ids=" ".join)
async def test_another_account_gets_404_and_changes_nothing(
    api_client: TestClient, make_account: MakeAccount, route: tuple[str, str]
) -> None:
    assert route in routed_operations(api_client.app), "the app must route every case"
    alice, bob = await make_account("alice"), await make_account("bob")
    ids = await owned_objects(api_client, alice)
    before = await alice_sees(api_client, alice, ids)
    method, path = route
    body = ACCOUNT_ROUTES[route]
    response = await api_client.request(method, concrete(path, ids), json=body, headers=bob.headers)
    await assert_error(response, 404, "not_found")
    assert await alice_sees(api_client, alice, ids) == before


async def test_listings_show_only_the_callers_objects(
    api_client: TestClient, make_account: MakeAccount
) -> None:
    alice, bob = await make_account("alice"), await make_account("bob")
    await owned_objects(api_client, alice)
    for listing in ("/v1/livestreams", "/v1/webhooks", "/v1/signing-keys"):
        response = await api_client.get(listing, headers=bob.headers)
        assert response.status == 200 and (await response.json())["data"] == []
        response = await api_client.get(listing, headers=alice.headers)
        assert response.status == 200 and len((await response.json())["data"]) == 1
