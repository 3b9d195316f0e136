"""Outbound URLs through the API, on SQLite and PostgreSQL: every hostile spelling of a private
host is refused for webhooks and restream targets at every route that takes a URL; URLs are
stored as the client reads them; and a webhook stored before the policy knew a spelling still
never reaches a loopback receiver (the sender checks the host right before connecting)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient

from api.app import create_app
from api.keys import DB_SESSIONMAKER
from api.models import Webhook, new_object_id, utc_now
from api.webhooks.sender import PRIVATE_HOST_ERROR
from config import Settings
from tests.api.conftest import AccountCredentials, assert_error, create_stream, new_account
from tests.api.webhook_support import FAST, deliveries, queue_event
from tests.conftest import HOSTILE_HOSTS, CountingListener
from tests.polling import eventually

PUBLIC_TARGET = {"url": "rtmp://a.example.com/live", "streamKey": "k1"}


async def refused(response: Any) -> bool:
    """Whether ``response`` is the 400 of a URL the policy refused as private."""
    if response.status != 400:
        return False
    body = await assert_error(response, 400, "validation_error")
    return "private" in body["details"][0]["message"]


async def test_hostile_webhook_urls_are_refused_at_creation(
    api_client: TestClient, account: AccountCredentials
) -> None:
    accepted = []
    for host in HOSTILE_HOSTS:
        body = {"url": f"http://{host}:8080/hook", "events": ["*"]}
        response = await api_client.post("/v1/webhooks", json=body, headers=account.headers)
        if not await refused(response):
            accepted.append((host, response.status))
    assert accepted == []


async def test_hostile_restream_urls_are_refused_on_every_route(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account, restream=[PUBLIC_TARGET])
    path = f"/v1/livestreams/{stream['id']}"
    target_path = f"{path}/restream/{stream['restream'][0]['_id']}"
    accepted = []
    for host in HOSTILE_HOSTS:
        target = {"url": f"rtmp://{host}:1935/live", "streamKey": "k2"}
        for method, url, body in [
            ("POST", "/v1/livestreams", {"name": "zujo", "restream": [target]}),
            ("PATCH", path, {"restream": [target]}),
            ("POST", f"{path}/restream", target),
            ("PATCH", target_path, {"url": target["url"]}),
        ]:
            response = await api_client.request(method, url, json=body, headers=account.headers)
            if not await refused(response):
                accepted.append((host, method, url, response.status))
    assert accepted == []


async def test_urls_are_stored_with_a_lower_case_scheme_and_normalised_host(
    api_client: TestClient, account: AccountCredentials
) -> None:
    hook = {"url": "HTTPS://Hooks.Example.INVALID/Path", "events": ["*"]}
    response = await api_client.post("/v1/webhooks", json=hook, headers=account.headers)
    assert response.status == 201, await response.text()
    assert (await response.json())["url"] == "https://hooks.example.invalid/Path"

    stream = await create_stream(
        api_client,
        account,
        restream=[
            {"url": "RTMP://A.Example.com/Live", "streamKey": "k1"},
            {"url": "RTMPS://\uff42.example.com:443/app", "streamKey": "k2"},
        ],
    )
    urls = [t["url"] for t in stream["restream"]]
    assert urls == ["rtmp://a.example.com/Live", "rtmps://b.example.com:443/app"]
    added = await api_client.post(
        f"/v1/livestreams/{stream['id']}/restream",
        json={"url": "RTMP://c.example.com/x", "streamKey": "k3"},
        headers=account.headers,
    )
    assert (await added.json())["url"] == "rtmp://c.example.com/x"
    shown = await (
        await api_client.get(f"/v1/livestreams/{stream['id']}", headers=account.headers)
    ).json()
    assert [t["url"] for t in shown["restream"]] == [*urls, "rtmp://c.example.com/x"]


async def test_stored_hostile_webhooks_never_reach_a_loopback_receiver(
    aiohttp_client: AiohttpClient,
    app_settings: Settings,
    counting_listener: CountingListener,
) -> None:
    client = await aiohttp_client(create_app(app_settings, webhook_policy=FAST))
    account = await new_account(client)
    hooks = {}
    async with client.app[DB_SESSIONMAKER]() as session, session.begin():
        for host in HOSTILE_HOSTS:
            url = f"http://{host}:{counting_listener.port}/hook"
            hooks[url] = new_object_id()
            session.add(
                Webhook(
                    id=hooks[url],
                    account_id=account.id,
                    url=url,
                    events=["*"],
                    secret="whsec_" + "0" * 64,
                    created_at=utc_now(),
                )
            )
    await queue_event(client, account.id)

    async def all_retried_or_delivered() -> bool:
        for webhook_id in hooks.values():
            rows = await deliveries(client, account, webhook_id)
            if not rows or (rows[0]["attempts"] < 2 and rows[0]["status"] != "delivered"):
                return False
        return True

    await eventually(all_retried_or_delivered, within=30)
    errors = {url: (await deliveries(client, account, wid))[0] for url, wid in hooks.items()}
    assert counting_listener.connections == 0
    unexplained = {
        u: d["lastError"] for u, d in errors.items() if d["lastError"] != PRIVATE_HOST_ERROR
    }
    assert unexplained == {}
