"""``/v1/webhooks`` on SQLite and PostgreSQL: create, list, get, delete, deliveries; validation,
the private-address policy, the per-account limit, tenant isolation and the OpenAPI shapes."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from api.routes.webhooks import MAX_WEBHOOKS_PER_ACCOUNT
from api.webhooks.outbox import EVENT_TYPES
from tests.api.conftest import HEX24, TIMESTAMP, AccountCredentials, MakeAccount, assert_error
from tests.api.spec_support import assert_matches_spec, fetch_document
from tests.api.webhook_support import create_webhook, deliveries, queue_event, stop_dispatcher

HOOK = "https://hooks.example.invalid/liverelay"  # .invalid never resolves (RFC 6761)


async def test_create_list_get_delete(api_client: TestClient, account: AccountCredentials) -> None:
    body = {"url": HOOK, "events": ["livestream.*", "recording.ready"]}
    response = await api_client.post("/v1/webhooks", json=body, headers=account.headers)

    assert response.status == 201
    created = await response.json()
    assert set(created) == {"id", "url", "events", "createdAt", "secret"}
    assert HEX24.match(created["id"]) and TIMESTAMP.match(created["createdAt"])
    assert (created["url"], created["events"]) == (HOOK, body["events"])
    assert created["secret"].startswith("whsec_") and len(created["secret"]) == 70
    assert response.headers["Location"] == f"/v1/webhooks/{created['id']}"
    public = {k: v for k, v in created.items() if k != "secret"}
    item = f"/v1/webhooks/{created['id']}"

    listing = await (await api_client.get("/v1/webhooks", headers=account.headers)).json()
    assert listing == {"data": [public]}
    assert await (await api_client.get(item, headers=account.headers)).json() == public
    response = await api_client.delete(item, headers=account.headers)
    assert response.status == 200 and await response.json() == public
    await assert_error(await api_client.get(item, headers=account.headers), 404, "not_found")
    await assert_error(await api_client.delete(item, headers=account.headers), 404, "not_found")
    listing = await (await api_client.get("/v1/webhooks", headers=account.headers)).json()
    assert listing == {"data": []}


async def test_listed_newest_first_and_repeated_events_once(
    api_client: TestClient, account: AccountCredentials
) -> None:
    old = await create_webhook(api_client, account, HOOK, ["*", "*", "restream.failed"])
    new = await create_webhook(api_client, account, HOOK + "/2", ["recording.*"])

    listing = await (await api_client.get("/v1/webhooks", headers=account.headers)).json()

    assert [w["id"] for w in listing["data"]] == [new["id"], old["id"]]
    assert old["events"] == ["*", "restream.failed"]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"events": ["*"]}, ["url"]),
        ({"url": HOOK}, ["events"]),
        ({"url": HOOK, "events": []}, ["events"]),
        ({"url": HOOK, "events": ["livestream.nope"]}, ["events[0]"]),
        ({"url": HOOK, "events": ["*", "livestream"]}, ["events[1]"]),
        ({"url": HOOK, "events": "*"}, ["events"]),
        ({"url": HOOK, "events": ["*"] * 21}, ["events"]),
        ({"url": HOOK, "events": ["*"], "secret": "mine"}, ["secret"]),
        ({"url": 5, "events": ["*"]}, ["url"]),
        ({"url": "", "events": ["*"]}, ["url"]),
        ({"url": "ftp://example.com/x", "events": ["*"]}, ["url"]),
        ({"url": "rtmp://example.com/x", "events": ["*"]}, ["url"]),
        ({"url": "https:///no-host", "events": ["*"]}, ["url"]),
        ({"url": "https://example.com/a b", "events": ["*"]}, ["url"]),
        ({"url": "https://example.com/\x00", "events": ["*"]}, ["url"]),
        ({"url": "https://example.com:99999/", "events": ["*"]}, ["url"]),
        ({"url": "https://example.com/" + "x" * 2048, "events": ["*"]}, ["url"]),
    ],
)
async def test_invalid_bodies_are_refused(
    api_client: TestClient, account: AccountCredentials, body: object, fields: list[str]
) -> None:
    response = await api_client.post("/v1/webhooks", json=body, headers=account.headers)
    await assert_error(response, 400, "validation_error", fields)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://2130706433/hook",
        "http://0.0.0.0/hook",
    ],
)
async def test_private_addresses_are_refused_by_default(
    api_client: TestClient, account: AccountCredentials, url: str
) -> None:
    response = await api_client.post(
        "/v1/webhooks", json={"url": url, "events": ["*"]}, headers=account.headers
    )
    body = await assert_error(response, 400, "validation_error", ["url"])
    assert "private" in body["details"][0]["message"]


async def test_an_account_has_a_limited_number_of_webhooks(
    api_client: TestClient, account: AccountCredentials
) -> None:
    for n in range(MAX_WEBHOOKS_PER_ACCOUNT):
        await create_webhook(api_client, account, f"{HOOK}/{n}")
    response = await api_client.post(
        "/v1/webhooks", json={"url": HOOK, "events": ["*"]}, headers=account.headers
    )
    await assert_error(response, 409, "webhook_limit_reached")


async def test_another_accounts_webhook_is_not_found(
    api_client: TestClient, make_account: MakeAccount
) -> None:
    owner, other = await make_account("A"), await make_account("B")
    await stop_dispatcher(api_client)
    webhook = await create_webhook(api_client, owner, HOOK)
    await queue_event(api_client, owner.id)
    item = f"/v1/webhooks/{webhook['id']}"

    for response in (
        await api_client.get(item, headers=other.headers),
        await api_client.delete(item, headers=other.headers),
        await api_client.get(f"{item}/deliveries", headers=other.headers),
    ):
        await assert_error(response, 404, "not_found")
    listing = await (await api_client.get("/v1/webhooks", headers=other.headers)).json()
    assert listing == {"data": []}
    assert len(await deliveries(api_client, owner, webhook["id"])) == 1
    for path in ("/v1/webhooks/nothex", "/v1/webhooks/0123456789abcdef01234567/deliveries"):
        await assert_error(await api_client.get(path, headers=owner.headers), 404, "not_found")


async def test_webhooks_need_a_token(api_client: TestClient) -> None:
    for response in (
        await api_client.get("/v1/webhooks"),
        await api_client.post("/v1/webhooks", json={"url": HOOK, "events": ["*"]}),
    ):
        await assert_error(response, 401, "unauthorized")


async def test_deliveries_are_paged_newest_first(
    api_client: TestClient, account: AccountCredentials
) -> None:
    await stop_dispatcher(api_client)
    webhook = await create_webhook(api_client, account, HOOK)
    events = [await queue_event(api_client, account.id) for _ in range(3)]
    path = f"/v1/webhooks/{webhook['id']}/deliveries"

    first = await (await api_client.get(f"{path}?perPage=2", headers=account.headers)).json()
    second = await (
        await api_client.get(f"{path}?page=2&perPage=2", headers=account.headers)
    ).json()

    assert first["pageInfo"] == {"currentPage": 1, "perPage": 2, "lastPage": 2}
    assert [d["eventId"] for d in first["data"] + second["data"]] == events[::-1]
    row = second["data"][0]
    assert set(row) == {
        "id",
        "eventId",
        "type",
        "sequence",
        "status",
        "attempts",
        "lastStatusCode",
        "lastError",
        "createdAt",
        "deliveredAt",
        "nextAttemptAt",
    }
    assert (row["status"], row["attempts"], row["type"]) == ("pending", 0, "livestream.started")
    assert TIMESTAMP.match(row["nextAttemptAt"]) and row["deliveredAt"] is None
    response = await api_client.get(f"{path}?perPage=0", headers=account.headers)
    await assert_error(response, 400, "validation_error", ["perPage"])


async def test_responses_match_the_openapi_document(
    api_client: TestClient, account: AccountCredentials
) -> None:
    await stop_dispatcher(api_client)
    document = await fetch_document(api_client)
    headers = account.headers
    body = {"url": HOOK, "events": ["*"]}
    response = await api_client.post("/v1/webhooks", json=body, headers=headers)
    webhook = await assert_matches_spec(document, "post", "/v1/webhooks", response)
    item = f"/v1/webhooks/{webhook['id']}"
    await queue_event(api_client, account.id)

    response = await api_client.get("/v1/webhooks", headers=headers)
    await assert_matches_spec(document, "get", "/v1/webhooks", response)
    response = await api_client.get(item, headers=headers)
    await assert_matches_spec(document, "get", "/v1/webhooks/{id}", response)
    response = await api_client.get(f"{item}/deliveries", headers=headers)
    await assert_matches_spec(document, "get", "/v1/webhooks/{id}/deliveries", response)
    response = await api_client.post("/v1/webhooks", json={"url": 1}, headers=headers)
    await assert_matches_spec(document, "post", "/v1/webhooks", response)
    response = await api_client.delete(item, headers=headers)
    await assert_matches_spec(document, "delete", "/v1/webhooks/{id}", response)
    response = await api_client.get(item, headers=headers)
    await assert_matches_spec(document, "get", "/v1/webhooks/{id}", response)


async def test_every_event_is_documented(api_client: TestClient) -> None:
    document = await fetch_document(api_client)

    assert set(document["webhooks"]) == set(EVENT_TYPES)
    schema = document["components"]["schemas"]["WebhookEvent"]
    assert set(schema["required"]) == {"id", "type", "createdAt", "sequence", "data"}
