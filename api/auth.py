"""API authentication: JWTs signed (HS256) with an account's secret, carrying its ``apikey``.

The token arrives raw in ``Authorization`` (``Bearer <jwt>`` is accepted too). The apikey is
read from the unverified payload only to find the secret; the token is then verified with that
secret, HS256 only, ``exp`` required.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api import queries

ALGORITHM = "HS256"
DEFAULT_PERMISSIONS = ("allow_join",)
_MAX_APIKEY_LENGTH = 64


@dataclass(frozen=True)
class AuthenticatedAccount:
    """The account a request is made for."""

    id: str
    """Account id (``userId`` in responses)."""
    name: str
    """Display name (``user.name``)."""
    apikey: str
    """The API key the token was issued for."""


class AuthenticationError(Exception):
    """The request is not authenticated; the message is safe to send to the client."""


def issue_token(
    apikey: str,
    secret: str,
    ttl_seconds: int,
    *,
    permissions: Sequence[str] = DEFAULT_PERMISSIONS,
    now: float | None = None,
) -> str:
    """A token for ``apikey`` valid ``ttl_seconds`` from ``now``."""
    issued = int(time.time() if now is None else now)
    payload = {
        "apikey": apikey,
        "permissions": list(permissions),
        "iat": issued,
        "exp": issued + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def token_from_header(value: str | None) -> str:
    """The JWT in an ``Authorization`` header value (raw or ``Bearer <jwt>``)."""
    if value is None or not value.strip():
        raise AuthenticationError("missing Authorization header")
    token = value.strip()
    scheme, _, rest = token.partition(" ")
    if scheme.lower() == "bearer":
        token = rest.strip()
    if not token:
        raise AuthenticationError("missing token in Authorization header")
    return token


def unverified_apikey(token: str) -> str:
    """The ``apikey`` claim of ``token`` before verification (only to look up the secret)."""
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise AuthenticationError("malformed token") from None
    if header.get("alg") != ALGORITHM:
        raise AuthenticationError(f"token must be signed with {ALGORITHM}")
    apikey = claims.get("apikey")
    if not isinstance(apikey, str) or not 0 < len(apikey) <= _MAX_APIKEY_LENGTH:
        raise AuthenticationError("token has no valid apikey claim")
    return apikey


def verify_token(token: str, secret: str) -> dict[str, Any]:
    """The verified claims of ``token``, or :class:`AuthenticationError` saying why not."""
    try:
        return jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["exp"]})
    except jwt.ExpiredSignatureError:
        raise AuthenticationError("token expired") from None
    except jwt.ImmatureSignatureError:
        raise AuthenticationError("token not yet valid") from None
    except jwt.InvalidSignatureError:
        raise AuthenticationError("invalid token signature") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthenticationError(f"token has no {exc.claim} claim") from None
    except jwt.InvalidTokenError:
        raise AuthenticationError("invalid token") from None


async def authenticate(
    sessionmaker: async_sessionmaker[AsyncSession], authorization: str | None
) -> AuthenticatedAccount:
    """The active account whose secret signed the token in ``authorization``."""
    token = token_from_header(authorization)
    apikey = unverified_apikey(token)
    async with sessionmaker() as session:
        account = await queries.get_active_account(session, apikey)
    if account is None:
        raise AuthenticationError("unknown or deleted apikey")
    verify_token(token, account.secret)
    return AuthenticatedAccount(id=account.id, name=account.name, apikey=account.apikey)
