"""The media context of the app: the RTMP listener, the live registry and the output orchestrator.

Started after the database (the publish authorizer needs it) and stopped before it: closing the
RTMP server ends every publish, which flushes the outputs and closes the playlists and recordings.
Before the RTMP listener opens, recordings an unclean shutdown left open are finalized.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from api.keys import AUTHORIZER, DB_SESSIONMAKER, LIVE, RTMP_PORT, SETTINGS
from api.metrics import METRICS
from api.recording_store import DatabaseRecordingStore
from api.stream_events import DatabaseStreamEvents
from api.stream_view import StreamView
from ingest.live import EndReason, LiveStreams
from ingest.server import RTMPServer
from workers.ffmpeg_binary import ffmpeg_version, resolve_ffmpeg
from workers.orchestrator import Orchestrator
from workers.status import SessionStatus, session_status
from workers.storage import LocalRecordingStorage

log = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 20.0
"""Bound of a graceful shutdown (SIGTERM): publishers closed, playlists and recordings ended."""

ORCHESTRATOR = web.AppKey("orchestrator", Orchestrator)
"""Every live stream's outputs on this node (read-only for routes)."""
RTMP_SERVER = web.AppKey("rtmp_server", RTMPServer)
"""The RTMP listener (its counters feed metrics)."""
RECORDING_STORAGE = web.AppKey("recording_storage", LocalRecordingStorage)
"""Where recordings are kept (routes delete through it)."""
FFMPEG_PATH = web.AppKey("ffmpeg_path", str)
"""The ffmpeg binary in use (checked by ``/readyz``)."""


async def media_context(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: resolve ffmpeg, start the RTMP listener, and wind both down in order."""
    settings = app[SETTINGS]
    ffmpeg = resolve_ffmpeg(settings)
    log.info("using %s (%s)", ffmpeg, await ffmpeg_version(ffmpeg))
    live = LiveStreams()
    storage = LocalRecordingStorage(settings.recordings_dir)
    events = DatabaseStreamEvents.for_app(app)
    orchestrator = Orchestrator(
        settings,
        ffmpeg=ffmpeg,
        recordings=DatabaseRecordingStore(app[DB_SESSIONMAKER], StreamView(app)),
        events=events,
        storage=storage,
        disconnect=live.end,
    )
    await orchestrator.recover()
    await events.close_interrupted()
    server = RTMPServer(settings, authorizer=app[AUTHORIZER], sink=orchestrator, live=live)
    await server.start()
    app[LIVE] = live
    app[ORCHESTRATOR] = orchestrator
    app[RECORDING_STORAGE] = storage
    app[RTMP_SERVER] = server
    app[RTMP_PORT] = server.port
    app[FFMPEG_PATH] = ffmpeg
    app[METRICS].watch_media(live, orchestrator, server)
    try:
        yield
    finally:
        await shut_down(live, server, orchestrator)


async def shut_down(live: LiveStreams, server: RTMPServer, orchestrator: Orchestrator) -> None:
    """Stop cleanly within :data:`SHUTDOWN_SECONDS`: publishers are told the server is going
    away (``onStatus``) and disconnected, playlists and recordings are closed with ENDLIST;
    then the listener closes. Past the bound the rest is cut short."""
    try:
        async with asyncio.timeout(SHUTDOWN_SECONDS):
            await asyncio.gather(
                *(live.end(stream_id, "shutdown") for stream_id in live.stream_ids()),
                return_exceptions=True,
            )
            await orchestrator.close()
    except TimeoutError:
        log.warning("shutdown took longer than %g s; stopping the rest at once", SHUTDOWN_SECONDS)
    await server.close()


async def end_live(app: web.Application, stream_id: str, reason: EndReason) -> bool:
    """End the live session of ``stream_id`` now: disconnect its publisher (if any) and close
    its outputs, also inside a reconnect window. Returns whether the stream was live."""
    disconnected = await app[LIVE].end(stream_id, reason)
    completed = await app[ORCHESTRATOR].complete(stream_id, reason)
    return disconnected or completed


def is_live(app: web.Application, stream_id: str) -> bool:
    """Whether ``stream_id`` has a live session on this node (also while reconnecting)."""
    outputs = app[ORCHESTRATOR].get(stream_id)
    return outputs is not None and not outputs.ending


def live_status(app: web.Application, stream_id: str) -> SessionStatus | None:
    """The status of the stream's live session, or None when it is not live."""
    outputs = app[ORCHESTRATOR].get(stream_id)
    if outputs is None or outputs.ending:
        return None
    return session_status(outputs)
