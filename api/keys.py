"""Typed keys of the application's and the request's state.

Everything the handlers need lives on the :class:`aiohttp.web.Application` under one of these
keys, set by the ``cleanup_ctx`` contexts of :func:`api.app.create_app`; nothing is global.
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.auth import AuthenticatedAccount, TokenCache
from config import Settings
from ingest.authorizer import PublishAuthorizer
from ingest.ratelimit import WarningRateLimiter

SETTINGS = web.AppKey("settings", Settings)
"""The settings the app was built with."""
DB_ENGINE = web.AppKey("db_engine", AsyncEngine)
"""The async engine; disposed when the app shuts down."""
DB_SESSIONMAKER: web.AppKey[async_sessionmaker[AsyncSession]] = web.AppKey("db_sessionmaker")
"""Opens one session per request (``expire_on_commit=False``)."""
RTMP_PORT = web.AppKey("rtmp_port", int)
"""The port the RTMP listener is bound to (for ``upstreamUrl``)."""
AUTHORIZER: web.AppKey[PublishAuthorizer] = web.AppKey("authorizer")
"""The database-backed publish authorizer handed to the ingest server."""
TOKEN_CACHE = web.AppKey("token_cache", TokenCache)
"""API tokens verified in the last ``LIVERELAY_TOKEN_CACHE_SECONDS`` (JWT middleware)."""
READINESS_WARNINGS = web.AppKey("readiness_warnings", WarningRateLimiter)
"""Limits the warnings of failing readiness checks (anyone may ask ``/readyz`` at any rate)."""

# web.RequestKey needs aiohttp >= 3.14.
REQUEST_ID = web.RequestKey("request_id", str)
"""The id of the current request (``X-Request-Id``), set by the request id middleware."""
ACCOUNT = web.RequestKey("account", AuthenticatedAccount)
"""The account whose token authenticated the current ``/v1`` request (JWT middleware)."""
METRICS_PORT = web.AppKey("metrics_port", int)
"""The port the separate metrics listener is bound to; absent when it is turned off."""
