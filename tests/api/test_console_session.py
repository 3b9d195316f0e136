"""The operator console's sign-in: a session cookie that authenticates ``/v1`` with a CSRF
header on changes, refused credentials throttled, sign-out final on every node."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient
from sqlalchemy import select, update

from api import queries
from api.app import create_app
from api.auth import issue_token
from api.keys import DB_SESSIONMAKER
from api.models import ConsoleSession
from config import Settings
from tests.api.conftest import AccountCredentials, assert_error

CONSOLE = {"X-Liverelay-Console": "1"}
COOKIE = "liverelay_console"


async def sign_in(client: TestClient, body: dict[str, Any]) -> Any:
    return await client.post("/console/session", json=body, headers=CONSOLE)


async def signed_in(client: TestClient, account: AccountCredentials) -> str:
    """Sign ``account`` in on ``client``; returns the session cookie's value."""
    response = await sign_in(client, {"apikey": account.apikey, "secret": account.secret})
    assert response.status == 200, await response.text()
    return str(response.cookies[COOKIE].value)


def cookie_only(token: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={token}"}


async def test_sign_in_sets_a_strict_http_only_cookie_that_authenticates_the_api(
    api_client: TestClient, account: AccountCredentials
) -> None:
    response = await sign_in(api_client, {"apikey": account.apikey, "secret": account.secret})
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["user"] == {"id": account.id, "name": account.name}
    assert body["apikey"] == account.apikey
    assert "secret" not in body and "token" not in body
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header
    assert "SameSite=Strict" in header
    assert "Path=/" in header
    assert "Secure" not in header  # the public URL is http://
    token = response.cookies[COOKIE].value
    api_client.session.cookie_jar.clear()
    listed = await api_client.get("/v1/livestreams", headers=cookie_only(token))
    assert listed.status == 200, await listed.text()
    who = await api_client.get("/console/session", headers=cookie_only(token))
    assert (await who.json())["user"]["id"] == account.id


async def test_cookie_is_secure_behind_an_https_public_url(
    aiohttp_client: AiohttpClient, app_settings: Settings
) -> None:
    settings = dataclasses.replace(app_settings, public_http_url="https://live.example.com")
    client = await aiohttp_client(create_app(settings))
    async with client.app[DB_SESSIONMAKER]() as session, session.begin():
        account = await queries.create_account(session, "Secure")
    response = await sign_in(client, {"apikey": account.apikey, "secret": account.secret})
    assert response.status == 200
    assert "Secure" in response.headers["Set-Cookie"]


async def test_sign_in_with_a_token_ends_no_later_than_the_token(
    api_client: TestClient, account: AccountCredentials
) -> None:
    token = issue_token(account.apikey, account.secret, 120)
    response = await sign_in(api_client, {"token": f"Bearer {token}"})
    assert response.status == 200, await response.text()
    expires = datetime.fromisoformat((await response.json())["expiresAt"].replace("Z", "+00:00"))
    assert expires <= datetime.now(UTC) + timedelta(seconds=121)
    assert int(response.cookies[COOKIE]["max-age"]) <= 121


async def test_wrong_credentials_get_a_clear_error(
    api_client: TestClient, account: AccountCredentials
) -> None:
    for body in (
        {"apikey": account.apikey, "secret": "wrong"},
        {"apikey": "no-such-key", "secret": account.secret},
        {"apikey": account.apikey + "x" * 64, "secret": account.secret},
    ):
        error = await assert_error(await sign_in(api_client, body), 401, "wrong_credentials")
        assert error["message"] == "wrong API key or secret"
    forged = issue_token(account.apikey, "0" * 64, 60)
    error = await assert_error(
        await sign_in(api_client, {"token": forged}), 401, "wrong_credentials"
    )
    assert error["message"] == "invalid token signature"
    assert COOKIE not in api_client.session.cookie_jar.filter_cookies(api_client.make_url("/"))


async def test_missing_fields_are_named(api_client: TestClient) -> None:
    form = {**CONSOLE, "Content-Type": "application/x-www-form-urlencoded"}
    response = await api_client.post("/console/session", data=b"apikey=k&secret=s", headers=form)
    await assert_error(response, 415, "unsupported_media_type")
    await assert_error(await sign_in(api_client, {}), 400, "validation_error", ["apikey"])
    await assert_error(
        await sign_in(api_client, {"apikey": "k"}), 400, "validation_error", ["secret"]
    )
    await assert_error(await sign_in(api_client, {"token": 5}), 400, "validation_error", ["token"])


async def test_refused_sign_ins_are_throttled_like_bad_stream_keys(
    aiohttp_client: AiohttpClient, app_settings: Settings
) -> None:
    settings = dataclasses.replace(app_settings, rtmp_auth_failures_per_minute=3)
    client = await aiohttp_client(create_app(settings))
    async with client.app[DB_SESSIONMAKER]() as session, session.begin():
        account = await queries.create_account(session, "Throttled")
    for _ in range(3):
        wrong = await sign_in(client, {"apikey": account.apikey, "secret": "wrong"})
        await assert_error(wrong, 401, "wrong_credentials")
    # Blocked: even the right secret is not checked now.
    right = await sign_in(client, {"apikey": account.apikey, "secret": account.secret})
    error = await assert_error(right, 429, "too_many_requests")
    assert "too many failed sign-ins" in error["message"]
    assert 0 < int(right.headers["Retry-After"]) <= 61


async def test_sign_in_and_sign_out_need_the_console_header(
    api_client: TestClient, account: AccountCredentials
) -> None:
    body = {"apikey": account.apikey, "secret": account.secret}
    response = await api_client.post("/console/session", json=body)
    await assert_error(response, 403, "csrf_refused")
    token = await signed_in(api_client, account)
    await assert_error(await api_client.delete("/console/session"), 403, "csrf_refused")
    still = await api_client.get("/v1/livestreams", headers=cookie_only(token))
    assert still.status == 200


async def test_changes_by_cookie_need_the_console_header(
    api_client: TestClient, account: AccountCredentials
) -> None:
    token = await signed_in(api_client, account)
    api_client.session.cookie_jar.clear()
    refused = await api_client.post(
        "/v1/livestreams", json={"name": "forged"}, headers=cookie_only(token)
    )
    error = await assert_error(refused, 403, "csrf_refused")
    assert "X-Liverelay-Console" in error["message"]
    listed = await api_client.get("/v1/livestreams", headers=cookie_only(token))
    assert (await listed.json())["data"] == []  # nothing was created
    created = await api_client.post(
        "/v1/livestreams", json={"name": "mine"}, headers={**cookie_only(token), **CONSOLE}
    )
    assert created.status == 201, await created.text()
    stream_id = (await created.json())["id"]
    deleted = await api_client.delete(f"/v1/livestreams/{stream_id}", headers=cookie_only(token))
    await assert_error(deleted, 403, "csrf_refused")


async def test_an_authorization_header_is_used_before_the_cookie(
    api_client: TestClient, account: AccountCredentials
) -> None:
    token = await signed_in(api_client, account)
    headers = {**cookie_only(token), "Authorization": "garbage"}
    await assert_error(
        await api_client.get("/v1/livestreams", headers=headers), 401, "unauthorized"
    )


async def test_sign_out_ends_the_session_on_every_node(
    aiohttp_client: AiohttpClient,
    api_client: TestClient,
    app_settings: Settings,
    account: AccountCredentials,
    tmp_path: Any,
) -> None:
    other_dir = tmp_path / "other-node"
    other_dir.mkdir()
    other = await aiohttp_client(create_app(dataclasses.replace(app_settings, data_dir=other_dir)))
    token = await signed_in(api_client, account)
    on_other = await other.get("/v1/livestreams", headers=cookie_only(token))
    assert on_other.status == 200, await on_other.text()
    response = await api_client.delete("/console/session", headers=CONSOLE)
    assert response.status == 204
    assert f"{COOKIE}=" in response.headers["Set-Cookie"]
    for client in (api_client, other):
        client.session.cookie_jar.clear()
        refused = await client.get("/v1/livestreams", headers=cookie_only(token))
        error = await assert_error(refused, 401, "unauthorized")
        assert "signed out" in error["message"]
        await assert_error(
            await client.get("/console/session", headers=cookie_only(token)), 401, "unauthorized"
        )


async def test_expired_sessions_and_deleted_accounts_are_refused(
    api_client: TestClient, account: AccountCredentials, make_account: Any
) -> None:
    token = await signed_in(api_client, account)
    api_client.session.cookie_jar.clear()
    past = datetime.now(UTC) - timedelta(seconds=1)
    async with api_client.app[DB_SESSIONMAKER]() as session, session.begin():
        await session.execute(
            update(ConsoleSession)
            .where(ConsoleSession.account_id == account.id)
            .values(expires_at=past)
        )
    expired = await api_client.get("/v1/livestreams", headers=cookie_only(token))
    await assert_error(expired, 401, "unauthorized")

    other = await make_account("Leaving")
    token = await signed_in(api_client, other)
    api_client.session.cookie_jar.clear()
    async with api_client.app[DB_SESSIONMAKER]() as session, session.begin():
        assert await queries.delete_account(session, other.apikey)
    gone = await api_client.get("/v1/livestreams", headers=cookie_only(token))
    await assert_error(gone, 401, "unauthorized")


async def test_session_lifetime_is_a_setting(
    aiohttp_client: AiohttpClient, app_settings: Settings
) -> None:
    client = await aiohttp_client(
        create_app(dataclasses.replace(app_settings, console_session_seconds=600))
    )
    async with client.app[DB_SESSIONMAKER]() as session, session.begin():
        account = await queries.create_account(session, "Short")
    before = time.time()
    response = await sign_in(client, {"apikey": account.apikey, "secret": account.secret})
    expires = datetime.fromisoformat((await response.json())["expiresAt"].replace("Z", "+00:00"))
    assert before + 599 <= expires.timestamp() <= time.time() + 601


async def test_expired_sessions_are_removed_at_the_next_sign_in(
    api_client: TestClient, account: AccountCredentials, make_account: Any
) -> None:
    await signed_in(api_client, account)
    past = datetime.now(UTC) - timedelta(seconds=1)
    async with api_client.app[DB_SESSIONMAKER]() as session, session.begin():
        await session.execute(
            update(ConsoleSession)
            .where(ConsoleSession.account_id == account.id)
            .values(expires_at=past)
        )
    await signed_in(api_client, await make_account("Someone else"))
    async with api_client.app[DB_SESSIONMAKER]() as session:
        left = await session.execute(
            select(ConsoleSession).where(ConsoleSession.account_id == account.id)
        )
        assert left.scalars().all() == []
