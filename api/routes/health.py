"""``GET /healthz`` (liveness), ``GET /readyz`` (readiness) and ``GET /metrics``."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

from aiohttp import web
from sqlalchemy import text

from api.keys import DB_ENGINE, SETTINGS
from api.media import FFMPEG_PATH
from api.metrics import metrics_handler
from api.schemas import HealthOutput, ReadinessOutput

CHECK_TIMEOUT = 2.0
"""Seconds each readiness check may take before it counts as failing."""


def register(router: web.UrlDispatcher) -> None:
    """Add the health, readiness and metrics routes to ``router``."""
    router.add_get("/healthz", healthz, allow_head=False)
    router.add_get("/readyz", readyz, allow_head=False)
    router.add_get("/metrics", metrics_handler, allow_head=False)


async def healthz(request: web.Request) -> web.Response:
    """Always ``{"status": "ok"}`` while the process serves HTTP."""
    return web.json_response(HealthOutput(status="ok").model_dump(by_alias=True))


async def readyz(request: web.Request) -> web.Response:
    """200 when the database answers, ffmpeg is executable and storage is writable; else 503."""
    app = request.app
    checks = {
        "database": await _check(_database(app)),
        "ffmpeg": await _check(asyncio.to_thread(_executable, app[FFMPEG_PATH])),
        "storage": await _check(asyncio.to_thread(_writable, app[SETTINGS].data_dir)),
    }
    ok = all(result == "ok" for result in checks.values())
    body = ReadinessOutput(status="ok" if ok else "unavailable", checks=checks)
    return web.json_response(body.model_dump(by_alias=True), status=200 if ok else 503)


async def _check(work: object) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await work  # type: ignore[misc]
    except TimeoutError:
        return f"timed out after {CHECK_TIMEOUT:g} s"
    except Exception as exc:  # any failure is a readiness answer, not a server error
        return f"{type(exc).__name__}: {exc}"[:200]
    return "ok"


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
