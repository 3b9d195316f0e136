"""The one middleware of the API (:func:`request_middleware`): request metrics, request ids,
JSON errors for everything, and authentication of ``/v1`` (a JWT, or the operator console's
session cookie: :mod:`api.console.sessions`).
"""

from __future__ import annotations

import logging
import os
import re
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from api.auth import AuthenticatedAccount, AuthenticationError, TokenRules, authenticate
from api.console import sessions as console
from api.errors import DATABASE_ERRORS, ApiError
from api.keys import (
    ACCOUNT,
    DB_SESSIONMAKER,
    METRICS,
    REQUEST_ID,
    REQUEST_IDS,
    SETTINGS,
    TOKEN_CACHE,
)
from config.logs import request_id_var

log = logging.getLogger(__name__)

"""Failures that mean the database is unreachable: a 503, not a 500."""

REQUEST_ID_HEADER = "X-Request-Id"
_ACCEPTED_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_PROTECTED_PREFIX = "/v1/"
_KEPT_HEADERS = ("Allow",)


class RequestIds:
    """New request ids: 32 random hex digits, read from the OS's random source ``batch`` ids
    at a time. ``uuid.uuid4()`` read it once per id (about 10 µs, the largest cost of this
    middleware on a low-latency viewer's ten requests a second)."""

    def __init__(self, batch: int = 256) -> None:
        self._batch = batch
        self._pool = b""
        self._next = 0

    def new(self) -> str:
        """A new request id."""
        if self._next >= len(self._pool):
            self._pool, self._next = os.urandom(16 * self._batch), 0
        start = self._next
        self._next += 16
        return self._pool[start : start + 16].hex()


@web.middleware
async def request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What every request goes through, outermost first: its duration in the metrics
    (:meth:`api.metrics.registry.Metrics.observe_http`, by route template), its request id
    (:func:`request_id`, on every response), every failure turned into the JSON error shape
    (unexpected ones a logged 500) and, on ``/v1``, authentication (:func:`authenticate_v1`).

    One coroutine rather than one middleware each: a low-latency viewer makes about ten
    requests a second, and four middlewares were four more coroutines and awaits on each."""
    started = time.perf_counter()
    status = 500
    try:
        request_id = _request_id(request)
        try:
            path = request.path
            if path.startswith(_PROTECTED_PREFIX) or path == "/v1":
                await authenticate_v1(request)
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _from_http_exception(request, exc).to_response(request_id)
        except Exception as exc:
            response = _error_response(request, request_id, exc)
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = request_id
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request.app[METRICS].observe_http(
            request.method, route, status, time.perf_counter() - started
        )


def _request_id(request: web.Request) -> str:
    """Echo a sane incoming ``X-Request-Id`` or make one."""
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    if incoming and _ACCEPTED_REQUEST_ID.fullmatch(incoming):
        request_id = incoming
    else:
        request_id = request.app[REQUEST_IDS].new()
    request[REQUEST_ID] = request_id
    request_id_var.set(request_id)  # the request's own task: its log lines carry the id
    return request_id


def _error_response(request: web.Request, request_id: str, exc: Exception) -> web.Response:
    """The JSON answer to a handler's failure ``exc`` (other than an HTTP exception)."""
    if isinstance(exc, ApiError):
        return exc.to_response(request_id)
    if isinstance(exc, DATABASE_ERRORS):
        log.error(
            "database unavailable in %s %s (request %s): %s",
            request.method,
            request.path,
            request_id,
            type(exc).__name__,
        )
        error = ApiError(
            503,
            "database unavailable, try again",
            code="service_unavailable",
            headers={"Retry-After": "5"},
        )
        return error.to_response(request_id)
    log.error(
        "unhandled error in %s %s (request %s)",
        request.method,
        request.path,
        request_id,
        exc_info=exc,
    )
    return ApiError(500, "internal server error").to_response(request_id)


async def authenticate_v1(request: web.Request) -> None:
    """Require a valid JWT (or the console's session cookie); sets ``request[ACCOUNT]``."""
    authorization = request.headers.get("Authorization")
    cookie = request.cookies.get(console.COOKIE_NAME)
    if authorization is None and cookie:
        request[ACCOUNT] = await _console_account(request, cookie)
        return
    try:
        account = await authenticate(
            request.app[DB_SESSIONMAKER],
            authorization,
            request.app[TOKEN_CACHE],
            TokenRules.from_settings(request.app[SETTINGS]),
        )
    except AuthenticationError as exc:
        raise ApiError(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None
    request[ACCOUNT] = account


async def _console_account(request: web.Request, cookie: str) -> AuthenticatedAccount:
    """The account of the console session in ``cookie``: 401 if it ended, 403 for a
    state-changing request without the console's CSRF header."""
    found = await console.session_account(request.app[DB_SESSIONMAKER], cookie)
    if found is None:
        raise ApiError(
            401,
            "console session expired or signed out: sign in again",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if request.method not in console.SAFE_METHODS and not console.csrf_header_present(request):
        raise ApiError(
            403,
            f"a request authenticated by the console cookie must send {console.CSRF_HEADER}: 1",
            code="csrf_refused",
        )
    return found[0]


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> ApiError:
    if exc.status == 404:
        message = f"no route for {request.method} {request.path}"
    elif exc.status == 405:
        message = f"method {request.method} not allowed on {request.path}"
    elif exc.status == 413:
        limit = request.app[SETTINGS].max_request_bytes
        message = f"request body larger than {limit} bytes"
    else:
        message = exc.reason
    headers = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
    return ApiError(exc.status, message, headers=headers)
