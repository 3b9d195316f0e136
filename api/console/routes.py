"""``/console/``: the operator console's static pages, hls.js, and its sign-in.

``POST /console/session`` takes ``{"apikey", "secret"}`` or ``{"token"}`` and answers with the
session cookie (:mod:`api.console.sessions`); ``GET`` tells who is signed in and ``DELETE``
signs out. The POST and DELETE need the console's CSRF header like every state-changing
request the cookie authenticates. Refused credentials count against the client address in the
throttle of refused stream keys (:class:`ingest.limits.AuthFailureThrottle`, at
``LIVERELAY_RTMP_AUTH_FAILURES_PER_MINUTE``): past it, sign-ins from that address get 429
without being checked.

Every response under ``/console/`` carries a strict Content-Security-Policy: scripts, styles
and connections from this origin only, media from blobs (hls.js plays through Media Source
Extensions) and a blob worker (hls.js transmuxes in one).
"""

from __future__ import annotations

import hmac
import logging
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from api import queries
from api.auth import (
    AuthenticatedAccount,
    AuthenticationError,
    TokenRules,
    authenticate,
    read_token,
    token_from_header,
)
from api.console import sessions
from api.errors import ApiError, FieldError
from api.keys import CONSOLE_THROTTLE, DB_SESSIONMAKER, SETTINGS, TOKEN_CACHE
from api.schemas.livestreams import read_json_object
from config import Settings

log = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; worker-src blob:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_STATIC_FILES = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "streams.js": "text/javascript",
    "stream.js": "text/javascript",
    "webhooks.js": "text/javascript",
    "app.css": "text/css",
}
_HLS_FILE = Path("hls.js") / "dist" / "hls.min.js"
_WRONG_CREDENTIALS = "wrong API key or secret"
_MAX_APIKEY_LENGTH = 64


def register(router: web.UrlDispatcher) -> None:
    """Add the console's routes to ``router``."""
    router.add_post("/console/session", sign_in)
    router.add_get("/console/session", who_is_signed_in, allow_head=False)
    router.add_delete("/console/session", sign_out)
    router.add_get("/console", _to_console, allow_head=False)
    router.add_get("/console/", static_file, allow_head=False)
    router.add_get("/console/vendor/hls.min.js", hls_script, allow_head=False)
    router.add_get("/console/{name}", static_file, allow_head=False)


def vendor_dir(settings: Settings) -> Path | None:
    """The ``node_modules`` that holds hls.js: ``console_vendor_dir`` if set, else beside the
    installed packages, else in the working directory (``None`` when none has it)."""
    if settings.console_vendor_dir is not None:
        candidates = [settings.console_vendor_dir]
    else:
        candidates = [Path(__file__).resolve().parents[2] / "node_modules", Path("node_modules")]
    return next((c for c in candidates if (c / _HLS_FILE).is_file()), None)


async def _to_console(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/console/")


async def static_file(request: web.Request) -> web.Response:
    """``index.html``, the scripts and ``app.css`` from the package data."""
    name = request.match_info.get("name", "index.html")
    content_type = _STATIC_FILES.get(name)
    if content_type is None:
        raise ApiError(404, f"no console file {name!r}")
    body = resources.files("api.console").joinpath("static", name).read_bytes()
    return _with_policy(web.Response(body=body, content_type=content_type, charset="utf-8"))


async def hls_script(request: web.Request) -> web.StreamResponse:
    """hls.js from ``node_modules`` (installed by ``npm ci``); 404 with how to install it."""
    directory = vendor_dir(request.app[SETTINGS])
    if directory is None:
        raise ApiError(404, "hls.js is not installed: run `npm ci` in the liverelay directory")
    response = web.FileResponse(directory / _HLS_FILE)
    response.content_type = "text/javascript"
    return _with_policy(response)


async def sign_in(request: web.Request) -> web.Response:
    """``POST /console/session`` -> 200 with the account and the session cookie."""
    _require_csrf_header(request)
    body = await read_json_object(request)
    throttle = request.app[CONSOLE_THROTTLE]
    address = request.remote or "unknown"
    wait = throttle.retry_after(address)
    if wait > 0:
        raise ApiError(
            429,
            f"too many failed sign-ins from this address: try again in {int(wait) + 1} s",
            headers={"Retry-After": str(int(wait) + 1)},
        )
    try:
        account, token_expiry = await _check_credentials(request, body)
    except AuthenticationError as exc:
        throttle.record_failure(address)
        log.warning("console sign-in refused from %s: %s", address, exc)
        raise ApiError(401, str(exc), code="wrong_credentials") from None
    settings = request.app[SETTINGS]
    expires_at = sessions.session_expiry(settings, token_expiry)
    token = await sessions.open_session(request.app[DB_SESSIONMAKER], account.id, expires_at)
    log.info("console session opened for account %s from %s", account.id, address)
    response = web.json_response(_session_body(account, expires_at))
    max_age = max(1, int((expires_at - datetime.now(UTC)).total_seconds()))
    sessions.set_cookie(response, settings, token, max_age)
    return response


async def who_is_signed_in(request: web.Request) -> web.Response:
    """``GET /console/session`` -> the signed-in account, or 401."""
    token = request.cookies.get(sessions.COOKIE_NAME)
    found = await sessions.session_account(request.app[DB_SESSIONMAKER], token) if token else None
    if found is None:
        raise ApiError(401, "not signed in")
    return web.json_response(_session_body(*found))


async def sign_out(request: web.Request) -> web.Response:
    """``DELETE /console/session`` -> 204; the session ends on every node."""
    _require_csrf_header(request)
    token = request.cookies.get(sessions.COOKIE_NAME)
    if token:
        await sessions.close_session(request.app[DB_SESSIONMAKER], token)
    response = web.Response(status=204)
    sessions.clear_cookie(response, request.app[SETTINGS])
    return response


async def _check_credentials(
    request: web.Request, body: dict[str, Any]
) -> tuple[AuthenticatedAccount, float | None]:
    token, apikey, secret = body.get("token"), body.get("apikey"), body.get("secret")
    if token is not None:
        if not isinstance(token, str) or not token:
            raise _field_error("token", "must be a non-empty string")
        app = request.app
        rules = TokenRules.from_settings(app[SETTINGS])
        account = await authenticate(app[DB_SESSIONMAKER], token, app[TOKEN_CACHE], rules)
        return account, read_token(token_from_header(token), rules).expires_at
    for field, value in (("apikey", apikey), ("secret", secret)):
        if not isinstance(value, str) or not value:
            raise _field_error(field, "required (or give a token instead)")
    assert isinstance(apikey, str) and isinstance(secret, str)
    found = None
    if len(apikey) <= _MAX_APIKEY_LENGTH:
        async with request.app[DB_SESSIONMAKER]() as session:
            found = await queries.get_active_account(session, apikey)
    # Compared in constant time; an unknown key is refused with the same message.
    expected = found.secret if found is not None else "\0" * len(secret)
    if found is None or not hmac.compare_digest(expected.encode(), secret.encode()):
        raise AuthenticationError(_WRONG_CREDENTIALS)
    return AuthenticatedAccount(found.id, found.name, found.apikey), None


def _field_error(field: str, message: str) -> ApiError:
    return ApiError(
        400, f"{field}: {message}", code="validation_error", details=[FieldError(field, message)]
    )


def _require_csrf_header(request: web.Request) -> None:
    if not sessions.csrf_header_present(request):
        raise ApiError(
            403,
            f"console sign-in and sign-out must send {sessions.CSRF_HEADER}: 1",
            code="csrf_refused",
        )


def _session_body(account: AuthenticatedAccount, expires_at: datetime) -> dict[str, object]:
    return {
        "user": {"id": account.id, "name": account.name},
        "apikey": account.apikey,
        "expiresAt": expires_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


_ResponseT = TypeVar("_ResponseT", bound=web.StreamResponse)


def _with_policy(response: _ResponseT) -> _ResponseT:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-cache"
    return response
