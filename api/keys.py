"""Typed keys of the application's and the request's state: every ``AppKey`` of the app.

Everything the handlers need lives on the :class:`aiohttp.web.Application` under one of these
keys, set by the ``cleanup_ctx`` contexts of :func:`api.app.create_app`; nothing is global.
The value types of other ``api`` modules are imported for type checking only, so that every
module can import its keys from here without an import cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.auth import AuthenticatedAccount, TokenCache
from api.playback_tokens import PlaybackGuard
from config import Settings
from ingest.authorizer import PublishAuthorizer
from ingest.limits import AuthFailureThrottle
from ingest.ratelimit import WarningRateLimiter
from ingest.server import RTMPServer
from ingest.tls import ServerCertificate
from workers.live_paths import LivePaths
from workers.llhls_output import EndedOutputs
from workers.recording_storages import AnyRecordingStorage
from workers.thumbnail_cache import ThumbnailCache

if TYPE_CHECKING:
    from api.access_log import AccessLogPolicy
    from api.cluster.context import Cluster
    from api.cluster.forwarding import PlaybackForwarder
    from api.cluster.ownership import LeaseOwnership
    from api.jobs.deletion import DeletionSweeper
    from api.jobs.retention import RetentionTask
    from api.live.drain import Drain
    from api.metrics.registry import Metrics
    from api.middlewares import RequestIds
    from api.webhooks.dispatcher import DeliveryPolicy, WebhookDispatcher

SETTINGS = web.AppKey("settings", Settings)
"""The settings the app was built with."""
REQUEST_IDS: web.AppKey[RequestIds] = web.AppKey("request_ids")
"""Where the request id middleware takes new request ids from."""
ACCESS_LOG_POLICY: web.AppKey[AccessLogPolicy] = web.AppKey("access_log_policy")
"""Which requests get an access-log line (``LIVERELAY_ACCESS_LOG``)."""
DB_ENGINE = web.AppKey("db_engine", AsyncEngine)
"""The async engine; disposed when the app shuts down."""
DB_SESSIONMAKER: web.AppKey[async_sessionmaker[AsyncSession]] = web.AppKey("db_sessionmaker")
"""Opens one session per request (``expire_on_commit=False``)."""
RTMP_PORT = web.AppKey("rtmp_port", int)
"""The port the RTMP listener is bound to (for ``upstreamUrl``)."""
RTMPS_PORT = web.AppKey("rtmps_port", int)
"""The port the RTMPS listener is bound to (for ``secureUpstreamUrl``); absent when it is off."""
RTMPS_CERTIFICATE = web.AppKey("rtmps_certificate", ServerCertificate)
"""The RTMPS listener's certificate, reloaded on SIGHUP; absent when RTMPS is off."""
PLAYBACK_GUARD = web.AppKey("playback_guard", PlaybackGuard)
"""Decides playback of signed streams (:mod:`api.playback_tokens`)."""
AUTHORIZER: web.AppKey[PublishAuthorizer] = web.AppKey("authorizer")
"""The database-backed publish authorizer handed to the ingest server."""
TOKEN_CACHE = web.AppKey("token_cache", TokenCache)
"""API tokens verified in the last ``LIVERELAY_TOKEN_CACHE_SECONDS`` (JWT middleware)."""
CONSOLE_THROTTLE = web.AppKey("console_throttle", AuthFailureThrottle)
"""Refused console sign-ins per client address (``POST /console/session``)."""
READINESS_WARNINGS = web.AppKey("readiness_warnings", WarningRateLimiter)
"""Limits the warnings of failing readiness checks (anyone may ask ``/readyz`` at any rate)."""
METRICS_PORT = web.AppKey("metrics_port", int)
"""The port the separate metrics listener is bound to; absent when it is turned off."""

PATHS = web.AppKey("live_paths", LivePaths)
"""Every live path on this node: routes read them, and end them only through
:func:`api.live.media_context.end_live`."""
LOW_LATENCY_ENDED = web.AppKey("low_latency_ended", EndedOutputs)
"""Low-latency playlists of paths that ended lately, still served until players reach the end."""
RTMP_SERVER = web.AppKey("rtmp_server", RTMPServer)
"""The RTMP listener (its counters feed metrics)."""
RECORDING_STORAGE: web.AppKey[AnyRecordingStorage] = web.AppKey("recording_storage")
"""Where recordings are kept (routes delete through it), local disk or object storage."""
THUMBNAILS = web.AppKey("thumbnails", ThumbnailCache)
"""Thumbnails made lately and the decodes under way (:mod:`api.routes.thumbnails`)."""
FFMPEG_PATH = web.AppKey("ffmpeg_path", str)
"""The ffmpeg binary in use (checked by ``/readyz``)."""

METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
"""The app's Prometheus registry and instruments."""
DELETION_SWEEPER: web.AppKey[DeletionSweeper] = web.AppKey("deletion_sweeper")
"""The app's sweeper (routes call :meth:`api.jobs.deletion.DeletionSweeper.remove_recordings`)."""
RETENTION: web.AppKey[RetentionTask] = web.AppKey("retention")
"""The app's pruning task (absent when ``LIVERELAY_RETENTION_DAYS`` is 0)."""
OWNERSHIP: web.AppKey[LeaseOwnership] = web.AppKey("ownership")
"""This node's stream ownership leases, held by its live paths (:mod:`api.cluster.ownership`);
set by the media context."""
CLUSTER: web.AppKey[Cluster] = web.AppKey("cluster")
"""This node's registry row, heartbeat and stream leases (:mod:`api.cluster.context`)."""
FORWARDER: web.AppKey[PlaybackForwarder] = web.AppKey("forwarder")
"""Passes playback of streams live on another node on to it (:mod:`api.cluster.forwarding`)."""
DRAIN: web.AppKey[Drain] = web.AppKey("drain")
"""The node's drain (:mod:`api.live.drain`): ``/readyz`` fails once it began."""
WEBHOOK_POLICY: web.AppKey[DeliveryPolicy] = web.AppKey("webhook_policy")
"""How the app's dispatcher delivers (set by :func:`api.app.create_app`)."""
WEBHOOK_DISPATCHER: web.AppKey[WebhookDispatcher] = web.AppKey("webhook_dispatcher")
"""The app's dispatcher (started by :func:`api.webhooks.dispatcher.webhook_context`)."""

# web.RequestKey needs aiohttp >= 3.14.
REQUEST_ID = web.RequestKey("request_id", str)
"""The id of the current request (``X-Request-Id``), set by the request id middleware."""
ACCOUNT = web.RequestKey("account", AuthenticatedAccount)
"""The account whose token authenticated the current ``/v1`` request (JWT middleware)."""
