"""JWT authentication of ``/v1``: HS256 only, ``exp`` required, active apikeys only."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient

from api import queries
from api.auth import issue_token
from api.keys import DB_SESSIONMAKER
from tests.api.conftest import AccountCredentials, assert_error


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
    tampered = f"{header}.{_b64({'apikey': account.apikey, 'exp': 2**40})}.{signature}"
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


async def test_deleted_apikey_is_refused(
    api_client: TestClient, account: AccountCredentials
) -> None:
    assert (await api_client.get("/v1/livestreams", headers=account.headers)).status == 200
    async with api_client.app[DB_SESSIONMAKER]() as session, session.begin():
        assert await queries.delete_account(session, account.apikey)
    await assert_unauthorized(api_client, account.headers, "unknown or deleted apikey")


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
