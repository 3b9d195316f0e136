"""The media context of the app: the RTMP listener, the live registry and the output orchestrator.

Started after the database (the publish authorizer needs it) and stopped before it: closing the
RTMP server ends every publish, which flushes the outputs and closes the playlists.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from api.keys import AUTHORIZER, LIVE, RTMP_PORT, SETTINGS
from ingest.live import LiveStreams
from ingest.server import RTMPServer
from workers.ffmpeg_binary import ffmpeg_version, resolve_ffmpeg
from workers.orchestrator import Orchestrator

log = logging.getLogger(__name__)

ORCHESTRATOR = web.AppKey("orchestrator", Orchestrator)
"""Every live stream's outputs on this node (read-only for routes)."""
RTMP_SERVER = web.AppKey("rtmp_server", RTMPServer)
"""The RTMP listener (its counters feed metrics)."""


async def media_context(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: resolve ffmpeg, start the RTMP listener, and wind both down in order."""
    settings = app[SETTINGS]
    ffmpeg = resolve_ffmpeg(settings)
    log.info("using %s (%s)", ffmpeg, await ffmpeg_version(ffmpeg))
    live = LiveStreams()
    orchestrator = Orchestrator(settings, ffmpeg=ffmpeg)
    server = RTMPServer(settings, authorizer=app[AUTHORIZER], sink=orchestrator, live=live)
    await server.start()
    app[LIVE] = live
    app[ORCHESTRATOR] = orchestrator
    app[RTMP_SERVER] = server
    app[RTMP_PORT] = server.port
    try:
        yield
    finally:
        await server.close()
        await orchestrator.close()
