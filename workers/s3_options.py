"""How recordings are stored in S3-compatible object storage (from the settings), and how
its errors read."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from config import Settings
from workers.backoff import Backoff

UPLOAD_BACKOFF = Backoff(initial=0.5, maximum=30.0)
"""Default waits between retries of a failed upload."""


@dataclass(frozen=True)
class S3Options:
    """Where and how recordings are stored in object storage."""

    bucket: str
    prefix: str = ""
    """Key prefix of every object, empty or ending with ``/``."""
    endpoint_url: str | None = None
    """Base URL of an S3-compatible server; ``None``: AWS S3."""
    region: str = "us-east-1"
    access_key_id: str | None = None
    """Explicit credentials; ``None``: botocore's chain (``AWS_ACCESS_KEY_ID``...)."""
    secret_access_key: str | None = field(default=None, repr=False)
    backlog_bytes: int = 512 * 1024 * 1024
    """Bound of the bytes of segments waiting for their upload, all recordings together."""
    backoff: Backoff = UPLOAD_BACKOFF
    """Waits between retries of a failed upload."""
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    resume_seconds: float = 10.0
    """How long after start-up finalizing a recording waits for the backlog the previous run
    left for it to be uploaded."""
    page_size: int = 1000
    """Keys per listing page and per ``DeleteObjects`` request (1000 at most)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Options | None:
        """The options ``settings`` select, ``None`` when recordings stay on local disk."""
        location = settings.s3_location
        if location is None:
            return None
        return cls(
            bucket=location[0],
            prefix=location[1],
            endpoint_url=settings.s3_endpoint,
            region=settings.s3_region,
            backlog_bytes=settings.upload_backlog_mb * 1024 * 1024,
        )


def status(exc: ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def error_code(exc: ClientError) -> str | None:
    code = exc.response.get("Error", {}).get("Code")
    return str(code) if code is not None else None


def describe(exc: BaseException) -> str:
    with contextlib.suppress(Exception):
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            return f"{error.get('Code')}: {error.get('Message')}"
    return str(exc) or type(exc).__name__
