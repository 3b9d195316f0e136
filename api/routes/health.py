"""``GET /healthz``: liveness of the HTTP server."""

from __future__ import annotations

from aiohttp import web

from api.schemas import HealthOutput


def register(router: web.UrlDispatcher) -> None:
    """Add the health route to ``router``."""
    router.add_get("/healthz", healthz, allow_head=False)


async def healthz(request: web.Request) -> web.Response:
    """Always ``{"status": "ok"}`` while the process serves HTTP."""
    return web.json_response(HealthOutput(status="ok").model_dump(by_alias=True))
