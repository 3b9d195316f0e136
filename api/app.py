"""The application factory: the composition root of liverelay."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from api.access_log import AccessLogPolicy
from api.auth import TokenCache
from api.cluster.context import cluster_context
from api.cluster.forwarding import forwarding_context
from api.console import routes as console
from api.database import database_context
from api.jobs.deletion import deletion_context
from api.jobs.retention import retention_context
from api.keys import (
    ACCESS_LOG_POLICY,
    CONSOLE_THROTTLE,
    DRAIN,
    LOW_LATENCY_ENDED,
    METRICS,
    REQUEST_IDS,
    SETTINGS,
    THUMBNAILS,
    TOKEN_CACHE,
    WEBHOOK_POLICY,
)
from api.live.drain import Drain, control_context
from api.live.media_context import media_context
from api.metrics.listener import metrics_listener_context, register_public
from api.metrics.loop_lag import loop_lag_context
from api.metrics.registry import Metrics
from api.middlewares import RequestIds, request_middleware
from api.openapi import document as openapi
from api.recording_storage import storage_context
from api.routes import (
    health,
    lifecycle,
    livestreams,
    playback,
    recordings,
    restream,
    sessions,
    signing_keys,
    thumbnails,
    webhooks,
)
from api.webhooks.dispatcher import DeliveryPolicy, webhook_context
from config import Settings
from ingest.limits import AuthFailureThrottle
from workers.llhls_output import EndedOutputs
from workers.thumbnail_cache import ThumbnailCache


def create_app(
    settings: Settings,
    *,
    webhook_policy: DeliveryPolicy | None = None,
    token_cache: TokenCache | None = None,
) -> web.Application:
    """Build the aiohttp app for ``settings`` (``webhook_policy``: how webhooks are retried;
    ``token_cache``: the cache of verified API tokens, by default one that keeps them
    ``settings.token_cache_seconds``).

    Contexts start in order and stop in reverse: (1) the database (engine, migrations to head,
    session factory, publish authorizer), (2) the webhook dispatcher, (3) media (live registry,
    RTMP port, the stream ownership leases the live paths hold), (4) the control socket
    (``liverelay drain``), (5) the metrics listener, (6) the cluster (registry row and
    heartbeat), (7) the deletion sweeper (ends what deleted streams leave live, removes their
    recordings), (8) retention (prunes old deliveries and sessions), (9) the event-loop lag probe
    (:mod:`api.metrics.loop_lag`). Deletion and retention take their job
    leases in the name of the node the cluster context registered, and give them up at shutdown
    before it marks the node gone.
    Media stops before the dispatcher and the database, so the events of the sessions it ends
    are queued while the database is still there. A drain (:mod:`api.live.drain`) ends the
    live sessions before any of them stops.
    """
    app = web.Application(
        middlewares=[request_middleware],
        client_max_size=settings.max_request_bytes,
    )
    app[SETTINGS] = settings
    app[REQUEST_IDS] = RequestIds()
    app[ACCESS_LOG_POLICY] = AccessLogPolicy(
        settings.access_log, logger=logging.getLogger("aiohttp.access")
    )
    app[METRICS] = Metrics()
    app[THUMBNAILS] = ThumbnailCache()
    app[METRICS].watch_thumbnails(app[THUMBNAILS])
    app[WEBHOOK_POLICY] = webhook_policy or DeliveryPolicy()
    if token_cache is None:
        token_cache = TokenCache(settings.token_cache_seconds)
    app[TOKEN_CACHE] = token_cache
    app[DRAIN] = Drain(settings.drain_seconds)
    app[LOW_LATENCY_ENDED] = EndedOutputs(settings.hls_segment_seconds * settings.hls_list_size * 2)
    app[CONSOLE_THROTTLE] = AuthFailureThrottle(
        settings.rtmp_auth_failures_per_minute, clock=time.monotonic
    )
    app.cleanup_ctx.append(database_context)
    app.cleanup_ctx.append(webhook_context)
    app.cleanup_ctx.append(storage_context)
    app.cleanup_ctx.append(media_context)
    app.cleanup_ctx.append(control_context)
    app.cleanup_ctx.append(metrics_listener_context)
    app.cleanup_ctx.append(cluster_context)
    app.cleanup_ctx.append(forwarding_context)
    app.cleanup_ctx.append(deletion_context)
    app.cleanup_ctx.append(retention_context)
    app.cleanup_ctx.append(loop_lag_context)
    health.register(app)
    livestreams.register(app.router)
    lifecycle.register(app.router)
    restream.register(app.router)
    sessions.register(app.router)
    recordings.register(app.router)
    playback.register(app.router, reserved=thumbnails.NAMES)  # first: the hot path
    thumbnails.register(app.router)
    webhooks.register(app.router)
    signing_keys.register(app.router)
    register_public(app.router, settings)
    openapi.register(app.router, settings)
    console.register(app.router)
    return app
