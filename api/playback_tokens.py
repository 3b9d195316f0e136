"""Signed playback: signing keys, playback tokens (RS256 JWTs) and their cheap verification.

A stream whose ``playback_policy`` is ``signed`` is played with ``?token=<jwt>``: header ``kid``
= a signing key of the stream's account, claims ``sub`` = the stream id, ``aud`` = ``"v"``,
``exp`` required (Mux's scheme). The playlists of such a stream carry the same token in their
URIs, so unmodified players keep sending it.

Verification is on the hot path (low-latency HLS: ~10 requests/s per viewer), so
:class:`PlaybackGuard` keeps three small caches, all bounded:

- verified tokens (LRU keyed by the token, each until its ``exp``): one signature check per
  token, not per request;
- public keys per ``kid`` for :data:`KEY_TTL_SECONDS`: a key deleted on any node (they share the
  database) refuses its tokens on every node within that bound; on the node that deleted it at
  once (:meth:`PlaybackGuard.forget_key`);
- stream policies for :data:`api.playback_policies.POLICY_TTL_SECONDS` (a change on this node
  applies at once), read for all the streams being played in one query
  (:class:`api.playback_policies.PolicyCache`).

A refusal is a 403 ``forbidden`` without detail; the reason is logged, rate-limited, never the
token.
"""

from __future__ import annotations

import base64
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.errors import DATABASE_ERRORS, ApiError
from api.models import Recording, SigningKey
from api.playback_policies import POLICY_TTL_SECONDS, Policy, PolicyCache

log = logging.getLogger(__name__)

AUDIENCE = "v"
ALGORITHM = "RS256"
KEY_TTL_SECONDS = 5.0
"""How long a public key (or its absence) is trusted without asking the database again: the
bound on how late another node notices a deleted key."""
TOKEN_CACHE_SIZE = 10_000
LOG_INTERVAL_SECONDS = 10.0
RSA_BITS = 2048


def generate_key_pair() -> tuple[str, str]:
    """A new RSA key: (private key PEM, base64-encoded; public key PEM)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(private_pem).decode("ascii"), public_pem.decode("ascii")


def issue_playback_token(
    stream_id: str, key_id: str, private_key: str, ttl_seconds: int, *, now: float | None = None
) -> str:
    """A playback token for ``stream_id``; ``private_key`` is PEM or base64-encoded PEM (as
    ``POST /v1/signing-keys`` returns it)."""
    pem = private_key.strip()
    if not pem.startswith("-----"):
        pem = base64.b64decode(pem).decode("ascii")
    issued = int(time.time() if now is None else now)
    claims = {"sub": stream_id, "aud": AUDIENCE, "exp": issued + ttl_seconds}
    return jwt.encode(claims, pem, algorithm=ALGORITHM, headers={"kid": key_id})


class Forbidden(ApiError):
    """403 ``forbidden``, nothing else: the reason is only logged."""

    def __init__(self) -> None:
        super().__init__(403, "forbidden", code="forbidden")


@dataclass(frozen=True)
class _Verified:
    stream_id: str
    kid: str
    expires_at: float


@dataclass(frozen=True)
class _Key:
    account_id: str
    public_key: str


class PlaybackGuard:
    """Decides whether a playback request for a stream may be answered (see the module)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        clock: Callable[[], float] = time.time,
        key_ttl: float = KEY_TTL_SECONDS,
        policy_ttl: float = POLICY_TTL_SECONDS,
        max_tokens: int = TOKEN_CACHE_SIZE,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._key_ttl = key_ttl
        self._max_tokens = max_tokens
        self._tokens: OrderedDict[str, _Verified] = OrderedDict()
        self._keys: dict[str, tuple[float, _Key | None]] = {}
        self._policies = PolicyCache(sessions, clock=clock, ttl=policy_ttl, max_size=max_tokens)
        self._recordings: OrderedDict[str, str] = OrderedDict()
        self._last_log = float("-inf")

    def forget_key(self, kid: str) -> None:
        """``kid`` was deleted here: its tokens are refused from now on."""
        self._keys[kid] = (self._clock() + self._key_ttl, None)
        for token in [t for t, v in self._tokens.items() if v.kid == kid]:
            del self._tokens[token]

    def forget_stream(self, stream_id: str) -> None:
        """``stream_id``'s policy changed here: read it again on its next request."""
        self._policies.forget(stream_id)

    async def policy(self, stream_id: str) -> Policy | None:
        """The stream's policy (``None``: no such stream; :class:`PolicyCache`). A deleted
        stream keeps its policy: whatever of it is still served until its files are gone needs
        a token if it did."""
        return await self._policies.get(stream_id)

    async def stream_of_recording(self, recording_id: str) -> str | None:
        """The stream a recording belongs to (it never changes, so it is kept, LRU)."""
        if recording_id in self._recordings:
            self._recordings.move_to_end(recording_id)
            return self._recordings[recording_id]
        async with self._sessions() as session:
            stream_id = await session.scalar(
                select(Recording.live_stream_id).where(Recording.id == recording_id)
            )
        if stream_id is not None:  # an unknown id may be a recording about to be created
            self._recordings[recording_id] = stream_id
            if len(self._recordings) > self._max_tokens:
                self._recordings.popitem(last=False)
        return stream_id

    async def check(self, stream_id: str, token: str | None) -> bool:
        """Whether a request for ``stream_id`` with ``token`` may be answered; raises
        :class:`Forbidden` if not. True when the stream is signed (the answer must then carry
        the token on), False when it is public (or unknown: the route answers as before)."""
        policy = await self.policy(stream_id)
        if policy is None or not policy.signed:
            return False
        if not token:
            self._refuse(stream_id, "no token")
        reason = await self._verify(token or "", stream_id, policy.account_id)
        if reason is not None:
            self._refuse(stream_id, reason)
        return True

    async def _verify(self, token: str, stream_id: str, account_id: str) -> str | None:
        now = self._clock()
        verified = self._tokens.get(token)
        if verified is not None and verified.expires_at <= now:
            del self._tokens[token]
            verified = None
        if verified is None:
            try:
                header = jwt.get_unverified_header(token)
            except jwt.InvalidTokenError:
                return "malformed token"
            kid = header.get("kid")
            if not isinstance(kid, str) or header.get("alg") != ALGORITHM:
                return "no kid or not RS256"
            key = await self._key(kid)
            if key is None:
                return f"unknown or deleted key {kid[:24]}"
            try:
                claims = jwt.decode(
                    token,
                    key.public_key,
                    algorithms=[ALGORITHM],
                    audience=AUDIENCE,
                    options={"require": ["exp", "sub", "aud"]},
                )
            except jwt.ExpiredSignatureError:
                return "expired token"
            except jwt.InvalidAudienceError:
                return "wrong audience"
            except jwt.InvalidTokenError as exc:
                return f"invalid token ({type(exc).__name__})"
            verified = _Verified(str(claims["sub"]), kid, float(claims["exp"]))
            self._tokens[token] = verified
            if len(self._tokens) > self._max_tokens:
                self._tokens.popitem(last=False)
        else:
            self._tokens.move_to_end(token)
        key = await self._key(verified.kid)  # cached: a deleted key is noticed within its TTL
        if key is None:
            return f"deleted key {verified.kid}"
        if key.account_id != account_id:
            return f"key {verified.kid} belongs to another account"
        if verified.stream_id != stream_id:
            return "token for another stream"
        return None

    async def _key(self, kid: str) -> _Key | None:
        now = self._clock()
        cached = self._keys.get(kid)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            async with self._sessions() as session:
                statement = select(SigningKey.account_id, SigningKey.public_key)
                row = (await session.execute(statement.where(SigningKey.id == kid))).first()
        except DATABASE_ERRORS:
            if cached is None:
                raise
            return cached[1]  # the database is away: what was known stays in force
        key = _Key(row[0], row[1]) if row is not None else None
        if key is None:
            for token in [t for t, v in self._tokens.items() if v.kid == kid]:
                del self._tokens[token]
        if len(self._keys) > self._max_tokens:
            self._keys.clear()
        self._keys[kid] = (now + self._key_ttl, key)
        return key

    def _refuse(self, stream_id: str, reason: str) -> None:
        now = time.monotonic()
        if now - self._last_log >= LOG_INTERVAL_SECONDS:
            self._last_log = now
            log.warning("playback of stream %s refused: %s", stream_id, reason)
        raise Forbidden()


def with_token(playlist: bytes, token: str) -> bytes:
    """``playlist`` with ``token`` added to every URI: URI lines and ``URI="…"`` attributes
    (``EXT-X-MAP``, ``EXT-X-PART``, ``EXT-X-PRELOAD-HINT``, ``EXT-X-RENDITION-REPORT``)."""
    query = f"token={quote(token, safe='')}"

    def add(uri: str) -> str:
        return f"{uri}{'&' if '?' in uri else '?'}{query}"

    def rewrite(line: str) -> str:
        if line and not line.startswith("#"):
            return add(line)
        if 'URI="' in line:
            head, _, rest = line.partition('URI="')
            uri, _, tail = rest.partition('"')
            return f'{head}URI="{add(uri)}"{tail}'
        return line

    lines = [rewrite(line) for line in playlist.decode("utf-8").splitlines()]
    return ("\n".join(lines) + "\n").encode("utf-8")
