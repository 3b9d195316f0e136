"""Console sessions: a random token in an ``HttpOnly``, ``SameSite=Strict`` cookie, and its
SHA-256 in the ``console_sessions`` table.

The table makes a session valid on every node sharing the database and makes signing out
final everywhere at once: the row is deleted, and every request looks it up (there is no cache
to outlive it). A session ends at ``expires_at`` or when its account is deleted.

A request authenticated by the cookie (rather than ``Authorization``) that changes anything
(any method but GET, HEAD and OPTIONS) must carry :data:`CSRF_HEADER` with the value ``1``: a
cross-site form cannot set a custom header, and a cross-site ``fetch`` with one needs a CORS
preflight that liverelay never grants. ``SameSite=Strict`` already keeps the cookie off
cross-site requests; the header is the second lock.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from aiohttp import web
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import AuthenticatedAccount
from api.models import Account, ConsoleSession
from config import Settings

COOKIE_NAME = "liverelay_console"
CSRF_HEADER = "X-Liverelay-Console"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_TOKEN_BYTES = 32


def _session_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_header_present(request: web.Request) -> bool:
    """Whether ``request`` carries the console's custom header."""
    return request.headers.get(CSRF_HEADER) == "1"


async def open_session(
    sessionmaker: async_sessionmaker[AsyncSession], account_id: str, expires_at: datetime
) -> str:
    """Store a new session of ``account_id`` until ``expires_at``; returns the cookie's token.
    Expired sessions (of any account) are removed on the way: sign-ins are rare, and the
    table stays as small as the sessions in use."""
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        await session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))
        session.add(
            ConsoleSession(
                id=_session_id(token), account_id=account_id, created_at=now, expires_at=expires_at
            )
        )
    return token


async def session_account(
    sessionmaker: async_sessionmaker[AsyncSession], token: str
) -> tuple[AuthenticatedAccount, datetime] | None:
    """The active account of the unexpired session ``token`` names, with its expiry."""
    query = (
        select(Account, ConsoleSession.expires_at)
        .join(ConsoleSession, ConsoleSession.account_id == Account.id)
        .where(
            ConsoleSession.id == _session_id(token),
            ConsoleSession.expires_at > datetime.now(UTC),
            Account.deleted_at.is_(None),
        )
    )
    async with sessionmaker() as session:
        row = (await session.execute(query)).one_or_none()
    if row is None:
        return None
    account, expires_at = row
    return AuthenticatedAccount(account.id, account.name, account.apikey), expires_at


async def close_session(sessionmaker: async_sessionmaker[AsyncSession], token: str) -> None:
    """End the session ``token`` names (nothing if there is none)."""
    async with sessionmaker() as session, session.begin():
        await session.execute(delete(ConsoleSession).where(ConsoleSession.id == _session_id(token)))


def session_expiry(settings: Settings, token_expires_at: float | None = None) -> datetime:
    """When a session opened now ends: after ``console_session_seconds``, or with the token
    it was opened with if that expires first."""
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=settings.console_session_seconds)
    if token_expires_at is not None:
        expires = min(expires, datetime.fromtimestamp(token_expires_at, UTC))
    return expires


def set_cookie(response: web.StreamResponse, settings: Settings, token: str, max_age: int) -> None:
    """Put the session cookie on ``response`` (``Secure`` when the public URL is https)."""
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_secure(settings),
    )


def clear_cookie(response: web.StreamResponse, settings: Settings) -> None:
    """Make the browser drop the session cookie."""
    response.del_cookie(
        COOKIE_NAME, path="/", httponly=True, samesite="Strict", secure=_secure(settings)
    )


def _secure(settings: Settings) -> bool:
    return (settings.public_http_url or "").lower().startswith("https://")
