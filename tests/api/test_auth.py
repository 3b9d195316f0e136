"""JWT authentication of ``/v1``: HS256 only, ``exp`` required, active apikeys only."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient

from api import queries
from api.app import create_app
from api.auth import TokenCache, issue_token
from api.keys import DB_SESSIONMAKER, TOKEN_CACHE
from config import Settings, SettingsError
from tests.api.conftest import AccountCredentials, assert_error, new_account
from tests.fakes import FakeClock


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def assert_unauthorized(
    client: TestClient, headers: dict[str, str], message: str | None = None
) -> None:
    response = await client.get("/v1/livestreams", headers=headers)
    error = await assert_error(response, 401, "unauthorized", [])
    assert response.headers["WWW-Authenticate"] == "Bearer"
    if message is not None:
        assert error["message"] == message


async def test_raw_and_bearer_tokens_are_accepted(
    api_client: TestClient, account: AccountCredentials
) -> None:
    for value in (account.token, f"Bearer {account.token}", f"bearer  {account.token} "):
        response = await api_client.get("/v1/livestreams", headers={"Authorization": value})
        assert response.status == 200, await response.text()


async def test_token_with_optional_claims_missing_is_accepted(
    api_client: TestClient, account: AccountCredentials
) -> None:
    token = jwt.encode(
        {"apikey": account.apikey, "exp": int(time.time()) + 60}, account.secret, "HS256"
    )
    response = await api_client.get("/v1/livestreams", headers={"Authorization": token})
    assert response.status == 200


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "missing Authorization header"),
        ("", "missing Authorization header"),
        ("Bearer ", "missing token in Authorization header"),
        ("garbage", "malformed token"),
        ("a.b.c", "malformed token"),
        ("Basic dXNlcjpwYXNz", "malformed token"),
    ],
)
async def test_missing_or_garbled_token(
    api_client: TestClient, value: str | None, message: str
) -> None:
    headers = {} if value is None else {"Authorization": value}
    await assert_unauthorized(api_client, headers, message)


async def test_bad_signature(api_client: TestClient, account: AccountCredentials) -> None:
    token = issue_token(account.apikey, "0" * 64, 60)
    await assert_unauthorized(api_client, {"Authorization": token}, "invalid token signature")
    header, _payload, signature = account.token.split(".")
    later = int(time.time()) + 600
    tampered = f"{header}.{_b64({'apikey': account.apikey, 'exp': later})}.{signature}"
    await assert_unauthorized(api_client, {"Authorization": tampered}, "invalid token signature")


async def test_expired_token(api_client: TestClient, account: AccountCredentials) -> None:
    token = issue_token(account.apikey, account.secret, 60, now=time.time() - 3600)
    await assert_unauthorized(api_client, {"Authorization": token}, "token expired")


async def test_token_without_exp(api_client: TestClient, account: AccountCredentials) -> None:
    token = jwt.encode({"apikey": account.apikey}, account.secret, "HS256")
    await assert_unauthorized(api_client, {"Authorization": token}, "token has no exp claim")


async def test_token_not_yet_valid(api_client: TestClient, account: AccountCredentials) -> None:
    now = int(time.time())
    claims = {"apikey": account.apikey, "exp": now + 7200, "nbf": now + 3600}
    token = jwt.encode(claims, account.secret, "HS256")
    await assert_unauthorized(api_client, {"Authorization": token}, "token not yet valid")


async def test_alg_none_is_refused(api_client: TestClient, account: AccountCredentials) -> None:
    claims = {"apikey": account.apikey, "exp": int(time.time()) + 60}
    for alg in ("none", "None", "NONE"):
        token = f"{_b64({'alg': alg, 'typ': 'JWT'})}.{_b64(claims)}."
        await assert_unauthorized(
            api_client, {"Authorization": token}, "token must be signed with HS256"
        )


async def test_other_algorithms_are_refused(
    api_client: TestClient, account: AccountCredentials
) -> None:
    claims = {"apikey": account.apikey, "exp": int(time.time()) + 60}
    for alg in ("HS512", "HS384"):
        token = jwt.encode(claims, account.secret, alg)
        await assert_unauthorized(
            api_client, {"Authorization": token}, "token must be signed with HS256"
        )


async def test_unknown_apikey(api_client: TestClient, account: AccountCredentials) -> None:
    token = issue_token("not-an-apikey", account.secret, 60)
    await assert_unauthorized(api_client, {"Authorization": token}, "unknown or deleted apikey")
    no_apikey = jwt.encode({"exp": int(time.time()) + 60}, account.secret, "HS256")
    await assert_unauthorized(
        api_client, {"Authorization": no_apikey}, "token has no valid apikey claim"
    )


async def delete_apikey(client: TestClient, apikey: str) -> None:
    async with client.app[DB_SESSIONMAKER]() as session, session.begin():
        assert await queries.delete_account(session, apikey)


async def get_status(client: TestClient, token: str) -> int:
    return (await client.get("/v1/livestreams", headers={"Authorization": token})).status


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
async def cached_client(
    aiohttp_client: AiohttpClient, app_settings: Settings, clock: FakeClock
) -> TestClient:
    """The app with a 5 s token cache on ``clock`` and room for 3 tokens."""
    cache = TokenCache(5.0, max_entries=3, clock=clock)
    return await aiohttp_client(create_app(app_settings, token_cache=cache))


async def test_deleted_apikey_is_refused_at_once_without_cache(
    aiohttp_client: AiohttpClient, app_settings: Settings
) -> None:
    client = await aiohttp_client(
        create_app(dataclasses.replace(app_settings, token_cache_seconds=0))
    )
    account = await new_account(client)
    assert await get_status(client, account.token) == 200
    await delete_apikey(client, account.apikey)
    await assert_unauthorized(client, account.headers, "unknown or deleted apikey")
    assert len(client.app[TOKEN_CACHE]) == 0


async def test_deleted_apikey_is_refused_once_the_cache_ttl_passes(
    cached_client: TestClient, clock: FakeClock
) -> None:
    account = await new_account(cached_client)
    assert await get_status(cached_client, account.token) == 200
    await delete_apikey(cached_client, account.apikey)
    clock.advance(4.9)
    assert await get_status(cached_client, account.token) == 200  # the documented window
    clock.advance(0.1)
    await assert_unauthorized(cached_client, account.headers, "unknown or deleted apikey")
    clock.advance(60)
    await assert_unauthorized(cached_client, account.headers, "unknown or deleted apikey")


async def test_expired_token_is_refused_even_when_cached(
    aiohttp_client: AiohttpClient, app_settings: Settings
) -> None:
    # One cache for two apps on one database: a lenient one (60 s leeway) verifies a token that
    # expired 30 s ago, while the cache's clock is still 40 s back; once that clock passes the
    # token's exp, the entry is gone and the strict app (no leeway) finds the token expired.
    now = time.time()
    clock = FakeClock(now - 40)
    cache = TokenCache(3600, clock=clock)
    apps = [
        create_app(dataclasses.replace(app_settings, jwt_leeway_seconds=leeway), token_cache=cache)
        for leeway in (60, 0)
    ]
    lenient, strict = [await aiohttp_client(app) for app in apps]
    account = await new_account(lenient)
    token = jwt.encode({"apikey": account.apikey, "exp": int(now) - 30}, account.secret, "HS256")
    assert await get_status(lenient, token) == 200
    assert len(cache) == 1
    assert await get_status(strict, token) == 200  # from the cache: before exp on its clock
    clock.advance(10)  # the cache's clock reaches exp
    await assert_unauthorized(strict, {"Authorization": token}, "token expired")


async def test_cache_never_outlives_the_token(cached_client: TestClient, clock: FakeClock) -> None:
    account = await new_account(cached_client)
    token = jwt.encode(
        {"apikey": account.apikey, "exp": int(clock.now) + 3}, account.secret, "HS256"
    )
    assert await get_status(cached_client, token) == 200
    await delete_apikey(cached_client, account.apikey)
    clock.advance(1)
    assert await get_status(cached_client, token) == 200
    clock.advance(2)  # past exp, still within the 5 s TTL: verified again
    await assert_unauthorized(cached_client, {"Authorization": token}, "unknown or deleted apikey")


async def test_bad_signature_is_refused_while_the_apikey_is_cached(
    cached_client: TestClient,
) -> None:
    account = await new_account(cached_client)
    assert await get_status(cached_client, account.token) == 200
    cache = cached_client.app[TOKEN_CACHE]
    assert len(cache) == 1
    forged = issue_token(account.apikey, "0" * 64, 60)
    header, _payload, signature = account.token.split(".")
    later = int(time.time()) + 600
    tampered = f"{header}.{_b64({'apikey': account.apikey, 'exp': later})}.{signature}"
    wrong_alg = jwt.encode({"apikey": account.apikey, "exp": later}, account.secret, "HS512")
    for _ in range(2):
        for token, message in (
            (forged, "invalid token signature"),
            (tampered, "invalid token signature"),
            (f"{account.token[:-2]}AA", "invalid token signature"),
            (wrong_alg, "token must be signed with HS256"),
        ):
            await assert_unauthorized(cached_client, {"Authorization": token}, message)
    assert len(cache) == 1  # refused tokens are never cached
    assert await get_status(cached_client, account.token) == 200


async def test_token_cache_stays_bounded(cached_client: TestClient, clock: FakeClock) -> None:
    account = await new_account(cached_client)
    tokens = [issue_token(account.apikey, account.secret, 60) for _ in range(5)]
    for token in tokens:
        assert await get_status(cached_client, token) == 200
    assert len(cached_client.app[TOKEN_CACHE]) == 3
    await delete_apikey(cached_client, account.apikey)
    # the three most recent are still cached; the two oldest were dropped and are checked again
    for token in tokens[2:]:
        assert await get_status(cached_client, token) == 200
    for token in tokens[:2]:
        await assert_unauthorized(
            cached_client, {"Authorization": token}, "unknown or deleted apikey"
        )
    assert len(cached_client.app[TOKEN_CACHE]) == 3


async def test_every_v1_route_requires_auth(api_client: TestClient) -> None:
    stream_url = f"/v1/livestreams/{'0' * 24}"
    for method, path in [
        ("POST", "/v1/livestreams"),
        ("GET", "/v1/livestreams"),
        ("GET", stream_url),
        ("PATCH", stream_url),
        ("POST", stream_url),
        ("DELETE", stream_url),
        ("GET", "/v1/anything"),
    ]:
        response = await api_client.request(method, path, json={"name": "x"})
        await assert_error(response, 401, "unauthorized")


async def test_public_routes_need_no_token(api_client: TestClient) -> None:
    assert (await api_client.get("/healthz")).status == 200
    assert (await api_client.get("/openapi.json")).status == 200


# -- clock skew, lifetime and permissions -----------------------------------------------------

MAX_TTL = 2_678_400
"""``LIVERELAY_JWT_MAX_TTL_SECONDS`` by default: 31 days."""


def signed(account: AccountCredentials, **claims: Any) -> dict[str, str]:
    """``Authorization`` with a token of ``claims`` (plus ``apikey``) signed by ``account``."""
    token = jwt.encode({"apikey": account.apikey, **claims}, account.secret, "HS256")
    return {"Authorization": token}


async def test_clock_skew_within_the_leeway_is_accepted(
    api_client: TestClient, account: AccountCredentials
) -> None:
    """A client whose clock is up to ``LIVERELAY_JWT_LEEWAY_SECONDS`` (60) off still works."""
    now = int(time.time())
    for claims in (
        {"exp": now - 30},  # the client's clock is behind: its fresh token looks expired
        {"iat": now + 30, "exp": now + 3600},  # ahead: issued "in the future"
        {"nbf": now + 30, "exp": now + 3600},
    ):
        response = await api_client.get("/v1/livestreams", headers=signed(account, **claims))
        assert response.status == 200, (claims, await response.text())


async def test_clock_skew_beyond_the_leeway_is_refused(
    api_client: TestClient, account: AccountCredentials
) -> None:
    now = int(time.time())
    for claims, message in (
        ({"exp": now - 90}, "token expired"),
        ({"iat": now + 90, "exp": now + 3600}, "token not yet valid"),
        ({"nbf": now + 90, "exp": now + 3600}, "token not yet valid"),
    ):
        await assert_unauthorized(api_client, signed(account, **claims), message)


async def test_leeway_is_a_setting(aiohttp_client: AiohttpClient, app_settings: Settings) -> None:
    settings = dataclasses.replace(app_settings, jwt_leeway_seconds=0)
    client = await aiohttp_client(create_app(settings))
    account = await new_account(client)
    expired = signed(account, exp=int(time.time()) - 30)
    await assert_unauthorized(client, expired, "token expired")


async def test_tokens_living_longer_than_the_max_ttl_are_refused(
    api_client: TestClient, account: AccountCredentials
) -> None:
    now = int(time.time())
    message = f"token lifetime exceeds {MAX_TTL} s"
    for claims in (
        {"iat": now, "exp": now + MAX_TTL + 1},
        {"iat": now - 3600, "exp": now + MAX_TTL},  # exp - iat counts, not what is left
        {"exp": now + MAX_TTL + 3600},  # no iat: exp - now counts
        {"iat": now, "exp": 2**40},
    ):
        await assert_unauthorized(api_client, signed(account, **claims), message)
    for claims in ({"iat": now, "exp": now + MAX_TTL}, {"exp": now + MAX_TTL - 60}):
        response = await api_client.get("/v1/livestreams", headers=signed(account, **claims))
        assert response.status == 200, (claims, await response.text())


async def test_max_ttl_is_a_setting(aiohttp_client: AiohttpClient, app_settings: Settings) -> None:
    settings = dataclasses.replace(app_settings, jwt_max_ttl_seconds=7200, token_ttl_seconds=3600)
    client = await aiohttp_client(create_app(settings))
    account = await new_account(client)
    now = int(time.time())
    too_long = signed(account, iat=now, exp=now + 7201)
    await assert_unauthorized(client, too_long, "token lifetime exceeds 7200 s")
    response = await client.get("/v1/livestreams", headers=signed(account, iat=now, exp=now + 7200))
    assert response.status == 200


def test_issued_token_lifetime_must_fit_the_max_ttl() -> None:
    with pytest.raises(SettingsError, match="LIVERELAY_TOKEN_TTL_SECONDS"):
        Settings.from_env({"LIVERELAY_TOKEN_TTL_SECONDS": str(MAX_TTL + 1)})
    with pytest.raises(SettingsError, match="LIVERELAY_TOKEN_TTL_SECONDS"):
        Settings.from_env(
            {"LIVERELAY_JWT_MAX_TTL_SECONDS": "3600", "LIVERELAY_TOKEN_TTL_SECONDS": "3601"}
        )
    for name, bad in (
        ("LIVERELAY_JWT_LEEWAY_SECONDS", "-1"),
        ("LIVERELAY_JWT_MAX_TTL_SECONDS", "0"),
    ):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: bad})
    fits = Settings.from_env({"LIVERELAY_TOKEN_TTL_SECONDS": str(MAX_TTL)})
    assert fits.token_ttl_seconds == fits.jwt_max_ttl_seconds == MAX_TTL
    assert fits.jwt_leeway_seconds == 60


@pytest.mark.parametrize(
    "permissions", [["allow_join"], ["allow_mod"], ["ask_join"], [], "anything", None]
)
async def test_permissions_claim_is_ignored(
    api_client: TestClient, account: AccountCredentials, permissions: object
) -> None:
    """The videosdk ``permissions`` claim grants nothing here: every valid token of an account
    has full access to that account (documented in the README)."""
    claims: dict[str, Any] = {"exp": int(time.time()) + 60}
    if permissions is not None:
        claims["permissions"] = permissions
    response = await api_client.get("/v1/livestreams", headers=signed(account, **claims))
    assert response.status == 200
