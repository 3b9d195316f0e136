"""Where ``GET /metrics`` is served: on a listener of its own, and on the public HTTP port
only to holders of ``LIVERELAY_METRICS_TOKEN``.

The series are labelled with the id of every live stream, and a stream id is all a viewer needs
to watch it, so the public port never shows them to anyone without the token. The listener
(``LIVERELAY_METRICS_HOST``/``LIVERELAY_METRICS_PORT``, ``127.0.0.1:9090`` by default) is a
second aiohttp runner started as a ``cleanup_ctx`` of the main app.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from api.errors import ApiError
from api.keys import METRICS, METRICS_PORT, SETTINGS
from api.metrics.registry import metrics_handler
from config import Settings

log = logging.getLogger(__name__)


async def metrics_listener_context(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: serve ``GET /metrics`` of ``app`` on the metrics listener (unless
    ``metrics_port`` is -1) and set :data:`api.keys.METRICS_PORT` to its bound port."""
    settings = app[SETTINGS]
    if settings.metrics_port < 0:
        log.info("metrics listener off (LIVERELAY_METRICS_PORT=-1)")
        yield
        return
    listener = web.Application()
    listener[METRICS] = app[METRICS]
    listener.router.add_get("/metrics", metrics_handler, allow_head=False)
    runner = web.AppRunner(listener, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.metrics_host, settings.metrics_port)
        try:
            await site.start()
        except OSError as exc:
            log.error(
                "cannot serve metrics on %s:%s (%s); set LIVERELAY_METRICS_HOST and "
                "LIVERELAY_METRICS_PORT, or LIVERELAY_METRICS_PORT=-1 to turn the listener off",
                settings.metrics_host,
                settings.metrics_port,
                exc.strerror or exc,
            )
            raise
        port = int(runner.addresses[0][1])
        app[METRICS_PORT] = port
        log.info("serving metrics on %s:%d", settings.metrics_host, port)
        yield
    finally:
        await runner.cleanup()


def register_public(router: web.UrlDispatcher, settings: Settings) -> None:
    """Add ``GET /metrics`` to the public ``router`` if ``settings.metrics_token`` is set; the
    request must then carry ``Authorization: Bearer <token>`` (compared in constant time)."""
    if settings.metrics_token is None:
        return
    expected = settings.metrics_token.value.encode()

    async def guarded_metrics(request: web.Request) -> web.Response:
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        if not (
            scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected)
        ):
            raise ApiError(
                401,
                "metrics need Authorization: Bearer <LIVERELAY_METRICS_TOKEN>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await metrics_handler(request)

    router.add_get("/metrics", guarded_metrics, allow_head=False)
