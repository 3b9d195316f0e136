"""The one error shape every failing request gets, and the exception that carries it.

``{"status": 400, "code": "validation_error", "message": "...",
"details": [{"field": "restream[0].url", "message": "..."}], "requestId": "..."}``
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy.exc import InterfaceError, OperationalError

DATABASE_ERRORS = (OperationalError, InterfaceError, TimeoutError, ConnectionError, OSError)
"""What an unreachable (or failing) database raises: answered 503, never a 500."""

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    429: "too_many_requests",
    431: "headers_too_large",
    500: "internal_error",
    503: "unavailable",
}


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of a request body."""

    field: str
    """Path of the field with JSON names, e.g. ``restream[0].url`` (empty: the whole body)."""
    message: str
    """What is wrong with it."""


class ApiError(Exception):
    """An error answered with the JSON error shape; raise it from handlers and middlewares."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or code_for_status(status)
        self.message = message
        self.details = tuple(details)
        self.headers = dict(headers or {})

    def to_response(self, request_id: str) -> web.Response:
        """The JSON response for this error."""
        body = {
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "details": [{"field": d.field, "message": d.message} for d in self.details],
            "requestId": request_id,
        }
        return web.json_response(body, status=self.status, headers=self.headers)


def code_for_status(status: int) -> str:
    """The machine-readable ``code`` of an HTTP error status."""
    return _CODES.get(status, "client_error" if status < 500 else "server_error")


class NotFound(ApiError):
    """404 with the standard shape."""

    def __init__(self, message: str = "not found") -> None:
        super().__init__(404, message)
