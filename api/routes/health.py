"""``GET /healthz`` (liveness) and ``GET /readyz`` (readiness), both without authentication.

``/readyz`` names the failing checks only; why they failed (paths, database host and user,
exception text) goes to the log: as a warning once per :data:`READINESS_WARNING_INTERVAL` and
check, with the number held back, and at DEBUG in between, since anyone may ask at any rate.
``GET /metrics`` lives in :mod:`api.metrics.listener`."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Literal

from aiohttp import web
from sqlalchemy import text

from api.keys import DB_ENGINE, DRAIN, FFMPEG_PATH, READINESS_WARNINGS, SETTINGS
from api.recording_storage import object_storage
from api.schemas.livestreams import HealthOutput, ReadinessOutput
from ingest.ratelimit import WarningRateLimiter

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 2.0
"""Seconds each readiness check may take before it counts as failing."""
READINESS_WARNING_INTERVAL = 60.0
"""Seconds between two warnings about one failing check."""


def register(app: web.Application) -> None:
    """Add the health and readiness routes to ``app``, and the limiter of its warnings."""
    app[READINESS_WARNINGS] = WarningRateLimiter(READINESS_WARNING_INTERVAL, clock=time.monotonic)
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/readyz", readyz, allow_head=False)


async def healthz(request: web.Request) -> web.Response:
    """Always ``{"status": "ok"}`` while the process serves HTTP."""
    return web.json_response(HealthOutput(status="ok").model_dump(by_alias=True))


async def readyz(request: web.Request) -> web.Response:
    """200 when the database answers, ffmpeg is executable, storage is writable and (when
    recordings go there) object storage answers; else 503 with each failing check marked
    ``failed`` (the reason is logged). While the node drains, 503 ``draining`` at once,
    without checks."""
    app = request.app
    if app[DRAIN].draining:
        body = ReadinessOutput(status="draining", checks={})
        return web.json_response(body.model_dump(by_alias=True), status=503)
    checks = {
        "database": await _check(app, "database", _database(app)),
        "ffmpeg": await _check(app, "ffmpeg", asyncio.to_thread(_executable, app[FFMPEG_PATH])),
        "storage": await _check(
            app, "storage", asyncio.to_thread(_writable, app[SETTINGS].data_dir)
        ),
    }
    bucket = object_storage(app)
    if bucket is not None:
        checks["objectStorage"] = await _check(app, "objectStorage", bucket.probe())
    ok = all(result == "ok" for result in checks.values())
    body = ReadinessOutput(status="ok" if ok else "unavailable", checks=checks)
    return web.json_response(body.model_dump(by_alias=True), status=200 if ok else 503)


async def _check(app: web.Application, name: str, work: object) -> Literal["ok", "failed"]:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await work  # type: ignore[misc]
    except TimeoutError:
        _failed(app, name, f"timed out after {CHECK_TIMEOUT:g} s")
        return "failed"
    except Exception as exc:  # any failure is a readiness answer, not a server error
        _failed(app, name, f"{type(exc).__name__}: {exc}")
        return "failed"
    return "ok"


def _failed(app: web.Application, name: str, reason: str) -> None:
    held_back = app[READINESS_WARNINGS].allow(name)
    if held_back is None:
        log.debug("readiness check %s failed: %s", name, reason)
    elif held_back:
        log.warning(
            "readiness check %s failed: %s (%d more since the last warning)",
            name,
            reason,
            held_back,
        )
    else:
        log.warning("readiness check %s failed: %s", name, reason)


async def _database(app: web.Application) -> None:
    async with app[DB_ENGINE].connect() as connection:
        await connection.execute(text("SELECT 1"))


def _executable(path: str) -> None:
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"ffmpeg is not executable at {path}")


def _writable(directory: Path) -> None:
    probe = directory / f".ready-{secrets.token_hex(4)}"
    probe.write_bytes(b"ok")
    probe.unlink()
