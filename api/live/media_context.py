"""The media context of the app: the RTMP listener and the live paths it admits publishers to.

Started after the database (the publish authorizer needs it) and stopped before it: ending every
live path disconnects its publisher, flushes its outputs and closes its playlist and recording.
Before the RTMP listener opens, recordings an unclean shutdown left open are finalized.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from api.keys import (
    AUTHORIZER,
    DB_SESSIONMAKER,
    FFMPEG_PATH,
    METRICS,
    PATHS,
    RECORDING_STORAGE,
    RTMP_PORT,
    RTMP_SERVER,
    SETTINGS,
)
from api.live.recording_store import DatabaseRecordingStore
from api.live.stream_events import DatabaseStreamEvents
from api.live.stream_view import StreamView
from ingest.live import EndReason
from ingest.server import RTMPServer
from workers.ffmpeg_binary import ffmpeg_version, resolve_ffmpeg
from workers.live_paths import LivePaths

log = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 20.0
"""Bound of a graceful shutdown (SIGTERM): publishers closed, playlists and recordings ended."""


async def media_context(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: resolve ffmpeg, start the RTMP listener, and wind both down in order."""
    settings = app[SETTINGS]
    ffmpeg = resolve_ffmpeg(settings)
    log.info("using %s (%s)", ffmpeg, await ffmpeg_version(ffmpeg))
    storage = app[RECORDING_STORAGE]  # opened by api.recording_storage.storage_context
    events = DatabaseStreamEvents.for_app(app)
    paths = LivePaths(
        settings,
        ffmpeg=ffmpeg,
        authorizer=app[AUTHORIZER],
        recordings=DatabaseRecordingStore(app[DB_SESSIONMAKER], StreamView(app)),
        events=events,
        storage=storage,
    )
    await paths.recover()
    await events.close_interrupted()
    server = RTMPServer(settings, admission=paths)
    await server.start()
    app[PATHS] = paths
    app[RTMP_SERVER] = server
    app[RTMP_PORT] = server.port
    app[FFMPEG_PATH] = ffmpeg
    app[METRICS].watch_media(paths, server)
    try:
        yield
    finally:
        await shut_down(paths, server)


async def shut_down(paths: LivePaths, server: RTMPServer) -> None:
    """Stop cleanly within :data:`SHUTDOWN_SECONDS`: publishers are told the server is going
    away (``onStatus``) and disconnected, playlists and recordings are closed with ENDLIST;
    then the listener closes. Past the bound the rest is cut short."""
    try:
        async with asyncio.timeout(SHUTDOWN_SECONDS):
            await paths.close()
    except TimeoutError:
        log.warning("shutdown took longer than %g s; stopping the rest at once", SHUTDOWN_SECONDS)
    await server.close()


async def end_live(app: web.Application, stream_id: str, reason: EndReason) -> bool:
    """End the live path of ``stream_id`` now: disconnect its publisher (if any) and close its
    outputs, also inside a reconnect window; a publish of the stream whose key check began
    before this call is turned away. Returns whether the stream was live."""
    return await app[PATHS].end(stream_id, reason)
