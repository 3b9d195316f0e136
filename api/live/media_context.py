"""The media context of the app: the RTMP listener and the live paths it admits publishers to.

Started after the database (the publish authorizer needs it) and stopped before it: ending every
live path disconnects its publisher, flushes its outputs and closes its playlist and recording.
Every new session holds its stream's ownership lease (:mod:`api.cluster.ownership`), renewed by
the lease keeper that runs with the media. Before the RTMP listener opens, the recordings and
sessions an unclean end left open are closed, for the streams no other node holds live and
whose reconnect window has passed; the rest is looked at again every lease lifetime, as are the
sessions other nodes left open later (:mod:`api.live.leftovers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from api.cluster.leases import StreamLeases
from api.cluster.nodes import NodeIdInUse, data_directory_id_or_none, default_node_id, list_nodes
from api.cluster.ownership import LeaseOwnership
from api.keys import (
    AUTHORIZER,
    DB_ENGINE,
    DB_SESSIONMAKER,
    FFMPEG_PATH,
    METRICS,
    OWNERSHIP,
    PATHS,
    RECORDING_STORAGE,
    RTMP_PORT,
    RTMP_SERVER,
    RTMPS_CERTIFICATE,
    RTMPS_PORT,
    SETTINGS,
)
from api.live.leftovers import LeftoverSessions
from api.live.recording_store import DatabaseRecordingStore
from api.live.session_resume import DatabaseSessionResume
from api.live.stream_events import DatabaseStreamEvents
from api.live.stream_view import StreamView
from config import Settings
from ingest.live import EndReason
from ingest.server import RTMPServer
from ingest.tls import ServerCertificate
from workers.ffmpeg_binary import ffmpeg_version, resolve_ffmpeg
from workers.live_paths import LivePaths

log = logging.getLogger(__name__)

RELEASE_SECONDS = 3.0
"""Bound of releasing the leases left after the paths ended (a database outage must not hold
the shutdown; the leases then expire by themselves)."""


async def media_context(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: resolve ffmpeg, start the RTMP listener, and wind both down in order."""
    settings = app[SETTINGS]
    ffmpeg = resolve_ffmpeg(settings)
    log.info("using %s (%s)", ffmpeg, await ffmpeg_version(ffmpeg))
    storage = app[RECORDING_STORAGE]  # opened by api.recording_storage.storage_context
    events = DatabaseStreamEvents.for_app(app)
    node_id = settings.node_id or default_node_id()
    if settings.node_id is not None:  # before recovery claims leases under that id
        async with app[DB_SESSIONMAKER]() as session:
            nodes = await list_nodes(session, settings.lease_seconds)
        if any(n.id == node_id and n.state in ("serving", "draining") for n in nodes):
            raise NodeIdInUse(f"node id {node_id!r} is in use by a running node")
    data_id = await asyncio.to_thread(data_directory_id_or_none, settings.data_dir)
    ownership = LeaseOwnership(StreamLeases(app[DB_SESSIONMAKER], node_id, settings.lease_seconds))
    paths = LivePaths(
        settings,
        ffmpeg=ffmpeg,
        authorizer=app[AUTHORIZER],
        recordings=DatabaseRecordingStore(app[DB_SESSIONMAKER], StreamView(app), data_id=data_id),
        events=events,
        storage=storage,
        ownership=ownership,
        resume=DatabaseSessionResume(
            app[DB_SESSIONMAKER],
            StreamView(app),
            events,
            shared=app[DB_ENGINE].dialect.name != "sqlite",  # several nodes may run
        ),
    )
    await asyncio.to_thread(clear_live_windows, settings.live_dir)
    leftovers = LeftoverSessions(app[DB_SESSIONMAKER], events)
    left = await paths.recover(leftovers, only=await leftovers.at_start())
    certificate = rtmps_certificate(settings)
    server = RTMPServer(settings, admission=paths, certificate=certificate)
    await server.start()
    if certificate is not None and server.tls_port is not None:
        app[RTMPS_CERTIFICATE] = certificate
        app[RTMPS_PORT] = server.tls_port
    app[OWNERSHIP] = ownership
    app[PATHS] = paths
    app[RTMP_SERVER] = server
    app[RTMP_PORT] = server.port
    app[FFMPEG_PATH] = ffmpeg
    app[METRICS].watch_media(paths, server)
    ownership.keeper.start()
    recovery = asyncio.create_task(recover_later(paths, leftovers, left, settings.lease_seconds))
    try:
        yield
    finally:
        recovery.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recovery
        await shut_down(paths, server, ownership, settings.drain_seconds)


def rtmps_certificate(settings: Settings) -> ServerCertificate | None:
    """The RTMPS listener's certificate when RTMPS is on (the files were checked with the
    settings; a file changed since then fails the start-up here)."""
    if not settings.rtmps_enabled:
        return None
    assert settings.tls_cert_file is not None and settings.tls_key_file is not None
    return ServerCertificate(settings.tls_cert_file, settings.tls_key_file)


def clear_live_windows(live_dir: Path) -> None:
    """Remove the live windows an earlier process of this node left (killed mid-stream: no
    ``ENDLIST``), before anything is admitted: nothing is live in a process that just started,
    and a frozen window must not be served as live. Recordings and the upload backlog hold
    their own links to the segments, so nothing recorded is lost."""
    if not live_dir.is_dir():
        return
    left = list(live_dir.iterdir())
    for entry in left:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    if left:
        log.info("removed %d live window(s) left by an earlier process", len(left))


async def recover_later(
    paths: LivePaths, leftovers: LeftoverSessions, left: set[str], interval: float
) -> None:
    """Every ``interval`` seconds, close what earlier ownerships left open once nobody can
    continue it any more (:mod:`api.live.leftovers`): the streams whose lease another node
    held at start-up (``left``), once their lease is free, and the sessions whose owner
    stopped without ending them (it drained and handed them over, or died) and that nobody
    continued within the stream's reconnect window."""
    while True:
        await asyncio.sleep(interval)
        left = await sweep_once(paths, leftovers, left)


async def sweep_once(paths: LivePaths, leftovers: LeftoverSessions, left: set[str]) -> set[str]:
    """One turn of :func:`recover_later`; returns the streams still left. Nearly every turn
    finds nothing to close: then nothing more is asked of the database."""
    only = await leftovers.sweep(left)
    return await paths.recover(leftovers, only=only) if only else set()


async def shut_down(
    paths: LivePaths, server: RTMPServer, ownership: LeaseOwnership, bound: float
) -> None:
    """Stop cleanly within ``bound`` seconds (``LIVERELAY_DRAIN_SECONDS``; after a drain the
    sessions have ended already): publishers are told the server is going
    away (``onStatus``) and disconnected, playlists and recordings are closed with ENDLIST and
    the streams' leases released; then the listener closes. Past the bound the rest is cut
    short (the leases left then expire by themselves)."""
    try:
        async with asyncio.timeout(bound):
            await paths.close()
    except TimeoutError:
        log.warning("shutdown took longer than %g s; stopping the rest at once", bound)
    try:
        async with asyncio.timeout(RELEASE_SECONDS):
            await ownership.keeper.close()
    except TimeoutError:
        log.warning("stream leases not released in time; they expire by themselves")
    await server.close()


async def end_live(app: web.Application, stream_id: str, reason: EndReason) -> bool:
    """End the live path of ``stream_id`` now: disconnect its publisher (if any) and close its
    outputs, also inside a reconnect window; a publish of the stream whose key check began
    before this call is turned away. Returns whether the stream was live."""
    return await app[PATHS].end(stream_id, reason)
