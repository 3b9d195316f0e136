"""API authentication: JWTs signed (HS256) with an account's secret, carrying its ``apikey``.

The token arrives raw in ``Authorization`` (``Bearer <jwt>`` is accepted too). It is decoded
once, without its signature: the header must say HS256, the claims must pass PyJWT's checks
(``exp`` required; ``exp``, ``nbf`` and ``iat`` with a clock-skew leeway), its lifetime must
not exceed the maximum (:class:`TokenRules`) and the ``apikey`` claim names the account. The
signature is then verified with that account's secret.

The videosdk ``permissions`` claim (``allow_join``, ``allow_mod``, ...) is ignored: a valid token
gives full access to its own account, whatever it lists. :func:`issue_token` still writes
``["allow_join"]`` so that tokens look like the ones videosdk clients know.

A token that passed is remembered in the app's :class:`TokenCache` for a few seconds, so that
a client's next requests cost a dictionary look-up instead of a JWT decode and a database
session.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jwt
from jwt.exceptions import InvalidJTIError, InvalidSubjectError
from jwt.types import Options
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api import queries
from config import Settings

ALGORITHM = "HS256"
DEFAULT_PERMISSIONS = ("allow_join",)
TOKEN_CACHE_MAX_ENTRIES = 1024
"""Tokens a :class:`TokenCache` holds at most; the least recently used is dropped first."""
_MAX_APIKEY_LENGTH = 64
_HS256 = jwt.get_algorithm_by_name(ALGORITHM)

CLAIM_CHECKS: Options = {
    "verify_signature": False,  # checked by check_signature() once the secret is known
    "verify_exp": True,
    "verify_nbf": True,
    "verify_iat": True,
    "verify_aud": True,
    "verify_iss": True,
    "verify_sub": True,
    "verify_jti": True,
    "require": ["exp"],
}
"""Every claim check PyJWT makes on a verified decode (the verifying ``decode`` defaults)."""
_BAD_CLAIMS = (
    jwt.InvalidAudienceError,
    jwt.InvalidIssuedAtError,
    jwt.InvalidIssuerError,
    InvalidJTIError,
    InvalidSubjectError,
)
"""Claims of the wrong type or value; any other decode failure means the token is malformed."""


@dataclass(frozen=True)
class TokenRules:
    """Time rules for API tokens, from ``LIVERELAY_JWT_LEEWAY_SECONDS`` and
    ``LIVERELAY_JWT_MAX_TTL_SECONDS``."""

    leeway_seconds: float = 60
    """Clock skew allowed on ``exp``, ``nbf`` and ``iat`` (PyJWT's ``leeway``)."""
    max_ttl_seconds: int = 2_678_400
    """Longest lifetime accepted: ``exp - iat``, or ``exp - now`` for a token without ``iat``."""

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenRules:
        """The rules ``settings`` configure."""
        return cls(settings.jwt_leeway_seconds, settings.jwt_max_ttl_seconds)


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


@dataclass(frozen=True)
class UnverifiedToken:
    """A token whose header and claims passed, before its signature is checked."""

    apikey: str
    """The ``apikey`` claim: whose secret must have signed the token."""
    expires_at: int
    """The ``exp`` claim (Unix time)."""
    signature: bytes
    """The decoded signature, for :func:`check_signature`."""


class TokenCache:
    """Recently verified tokens: token -> account, LRU-bounded to ``max_entries``.

    An entry lasts until the earlier of the token's ``exp`` and ``ttl_seconds`` after it was
    verified. The TTL is how long a deleted API key keeps working in this process:
    ``liverelay apikey delete`` runs in another process and cannot reach the cache. A TTL of 0
    disables the cache. ``clock`` returns Unix time (it is compared with ``exp``).
    """

    def __init__(
        self,
        ttl_seconds: float,
        *,
        max_entries: int = TOKEN_CACHE_MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_seconds < 0:
            raise ValueError("ttl_seconds must be >= 0")
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        # token -> (account, verified at, valid until)
        self._entries: OrderedDict[str, tuple[AuthenticatedAccount, float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str) -> AuthenticatedAccount | None:
        """The account ``token`` authenticated, if it was verified recently enough."""
        entry = self._entries.get(token)
        if entry is None:
            return None
        account, verified_at, valid_until = entry
        # A clock set back would stretch the TTL: drop the entry instead.
        if not verified_at <= self._clock() < valid_until:
            del self._entries[token]
            return None
        self._entries.move_to_end(token)
        return account

    def put(self, token: str, account: AuthenticatedAccount, expires_at: float) -> None:
        """Remember that ``token`` (valid until ``expires_at``) authenticates ``account``."""
        if self._ttl <= 0:
            return
        now = self._clock()
        valid_until = min(expires_at, now + self._ttl)
        if valid_until <= now:
            return
        self._entries[token] = (account, now, valid_until)
        self._entries.move_to_end(token)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)


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


def read_token(token: str, rules: TokenRules = TokenRules()) -> UnverifiedToken:
    """Decode ``token`` once, without its signature: the header must say HS256, the claims
    must pass :data:`CLAIM_CHECKS` (with ``rules.leeway_seconds``), the lifetime must be within
    ``rules.max_ttl_seconds`` and an ``apikey`` must be there (only used to find the secret)."""
    try:
        decoded = jwt.decode_complete(token, options=CLAIM_CHECKS, leeway=rules.leeway_seconds)
    except jwt.ExpiredSignatureError:
        raise AuthenticationError("token expired") from None
    except jwt.ImmatureSignatureError:
        raise AuthenticationError("token not yet valid") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthenticationError(f"token has no {exc.claim} claim") from None
    except _BAD_CLAIMS:
        raise AuthenticationError("invalid token") from None
    except jwt.InvalidTokenError:
        raise AuthenticationError("malformed token") from None
    if decoded["header"].get("alg") != ALGORITHM:
        raise AuthenticationError(f"token must be signed with {ALGORITHM}")
    claims = decoded["payload"]
    apikey = claims.get("apikey")
    if not isinstance(apikey, str) or not 0 < len(apikey) <= _MAX_APIKEY_LENGTH:
        raise AuthenticationError("token has no valid apikey claim")
    expires_at = int(claims["exp"])
    # PyJWT checked that exp and any iat are numbers; without iat, the lifetime left counts.
    issued_at = claims.get("iat", time.time())
    if expires_at - issued_at > rules.max_ttl_seconds:
        raise AuthenticationError(f"token lifetime exceeds {rules.max_ttl_seconds} s")
    return UnverifiedToken(apikey, expires_at, decoded["signature"])


def check_signature(token: str, unverified: UnverifiedToken, secret: str) -> None:
    """Verify the HS256 signature of ``token`` (as read by :func:`read_token`) with ``secret``."""
    signing_input = token.rpartition(".")[0].encode()
    if not _HS256.verify(signing_input, _HS256.prepare_key(secret), unverified.signature):
        raise AuthenticationError("invalid token signature")


async def authenticate(
    sessionmaker: async_sessionmaker[AsyncSession],
    authorization: str | None,
    cache: TokenCache,
    rules: TokenRules = TokenRules(),
) -> AuthenticatedAccount:
    """The active account whose secret signed the token in ``authorization``.

    A token in ``cache`` is trusted as it is; any other is decoded (under ``rules``), its
    account loaded and its signature verified, and only then cached. Refused tokens are never
    cached.
    """
    token = token_from_header(authorization)
    cached = cache.get(token)
    if cached is not None:
        return cached
    unverified = read_token(token, rules)
    async with sessionmaker() as session:
        account = await queries.get_active_account(session, unverified.apikey)
    if account is None:
        raise AuthenticationError("unknown or deleted apikey")
    check_signature(token, unverified, account.secret)
    authenticated = AuthenticatedAccount(id=account.id, name=account.name, apikey=account.apikey)
    cache.put(token, authenticated, unverified.expires_at)
    return authenticated
