"""The cache of verified API tokens and the one-decode token reader, without a database."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from jwt.types import Options

from api.auth import (
    CLAIM_CHECKS,
    AuthenticatedAccount,
    AuthenticationError,
    TokenCache,
    check_signature,
    read_token,
)
from config import Settings, SettingsError
from tests.fakes import FakeClock

SECRET = "s" * 64


def account(n: int) -> AuthenticatedAccount:
    return AuthenticatedAccount(id=f"id{n}", name=f"user {n}", apikey=f"key{n}")


def token(**claims: Any) -> str:
    return jwt.encode({"apikey": "key1", "exp": int(time.time()) + 60, **claims}, SECRET, "HS256")


def test_entry_lasts_until_the_earlier_of_exp_and_ttl() -> None:
    clock = FakeClock()
    cache = TokenCache(5, clock=clock)
    cache.put("short", account(1), expires_at=clock.now + 2)
    cache.put("long", account(2), expires_at=clock.now + 3600)
    clock.now += 1.999
    assert cache.get("short") == account(1)
    clock.now += 0.001
    assert cache.get("short") is None
    clock.now += 2.999
    assert cache.get("long") == account(2)
    clock.now += 0.001
    assert cache.get("long") is None
    assert len(cache) == 0


def test_expired_or_ttl_zero_tokens_are_not_stored() -> None:
    clock = FakeClock()
    cache = TokenCache(5, clock=clock)
    cache.put("expired", account(1), expires_at=clock.now)
    assert cache.get("expired") is None
    disabled = TokenCache(0, clock=clock)
    disabled.put("t", account(1), expires_at=clock.now + 60)
    assert disabled.get("t") is None
    assert len(cache) == len(disabled) == 0


def test_least_recently_used_entry_is_dropped() -> None:
    clock = FakeClock()
    cache = TokenCache(5, max_entries=3, clock=clock)
    for n in range(3):
        cache.put(f"t{n}", account(n), expires_at=clock.now + 60)
    assert cache.get("t0") == account(0)  # t1 is now the least recently used
    cache.put("t3", account(3), expires_at=clock.now + 60)
    assert len(cache) == 3
    assert cache.get("t1") is None
    assert [cache.get(f"t{n}") for n in (0, 2, 3)] == [account(0), account(2), account(3)]
    for n in range(4, 1000):
        cache.put(f"t{n}", account(n), expires_at=clock.now + 60)
    assert len(cache) == 3


def test_clock_set_back_drops_the_entry() -> None:
    clock = FakeClock()
    cache = TokenCache(5, clock=clock)
    cache.put("t", account(1), expires_at=clock.now + 60)
    clock.now -= 3600
    assert cache.get("t") is None


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        TokenCache(-1)
    with pytest.raises(ValueError):
        TokenCache(5, max_entries=0)


def test_setting() -> None:
    assert Settings().token_cache_seconds == 5
    assert Settings.from_env({"LIVERELAY_TOKEN_CACHE_SECONDS": "0"}).token_cache_seconds == 0
    for bad in ("-1", "nan"):
        with pytest.raises(SettingsError, match="LIVERELAY_TOKEN_CACHE_SECONDS"):
            Settings.from_env({"LIVERELAY_TOKEN_CACHE_SECONDS": bad})


def test_claim_checks_are_those_of_a_verifying_decode() -> None:
    """Every ``verify_*`` option PyJWT knows is on, except the signature (checked apart)."""
    known = {name for name in Options.__annotations__ if name.startswith("verify_")}
    assert known <= set(CLAIM_CHECKS)
    assert {name for name in known if not CLAIM_CHECKS.get(name)} == {"verify_signature"}
    assert CLAIM_CHECKS["require"] == ["exp"]


def test_read_token_then_check_signature() -> None:
    good = token()
    unverified = read_token(good)
    assert unverified.apikey == "key1"
    check_signature(good, unverified, SECRET)
    with pytest.raises(AuthenticationError, match=r"^invalid token signature$"):
        check_signature(good, unverified, "t" * 64)


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": 1}, "token expired"),
        ({"nbf": 2**40}, "token not yet valid"),
        ({"exp": None}, "token has no exp claim"),
        ({"aud": "someone"}, "invalid token"),
        ({"iat": "yesterday"}, "invalid token"),
        ({"jti": 5}, "invalid token"),
        ({"sub": 5}, "invalid token"),
        ({"apikey": ""}, "token has no valid apikey claim"),
        ({"apikey": "k" * 65}, "token has no valid apikey claim"),
    ],
)
def test_claims_are_checked_before_the_secret_is_needed(
    claims: dict[str, Any], message: str
) -> None:
    with pytest.raises(AuthenticationError, match=f"^{message}$"):
        read_token(token(**claims))
