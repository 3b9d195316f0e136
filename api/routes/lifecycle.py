"""``/v1/livestreams/{id}/...`` actions on a stream's life: reset its key, disable and enable
it, complete its live session.

Each one answers 200 with the stream object. A change is committed before the live session it
ends is ended, so a publisher reconnecting at once already meets the new state (refused key,
disabled stream). Ending a session goes through :func:`api.cluster.commands.end_everywhere`:
on this node (also a session waiting in its reconnect window), or on the node whose lease says
the stream is live there.
"""

from __future__ import annotations

import logging

from aiohttp import web

from api import queries
from api.keys import ACCOUNT
from api.routes.livestreams import end_session, own_stream, render_stream, transaction
from api.routes.owner_state import with_owner_state

log = logging.getLogger(__name__)


def register(router: web.UrlDispatcher) -> None:
    """Add the lifecycle action routes to ``router``."""
    router.add_post("/v1/livestreams/{id}/reset-stream-key", reset_stream_key)
    router.add_post("/v1/livestreams/{id}/disable", disable_live_stream)
    router.add_post("/v1/livestreams/{id}/enable", enable_live_stream)
    router.add_post("/v1/livestreams/{id}/complete", complete_live_stream)


async def reset_stream_key(request: web.Request) -> web.Response:
    """``POST /v1/livestreams/{id}/reset-stream-key``: a new key; the old one's publisher goes."""
    async with transaction(request) as session:
        stream = await own_stream(request, session, lock=True)
        await queries.reset_stream_key(session, stream)
    log.info("live stream %s: stream key reset by account %s", stream.id, request[ACCOUNT].id)
    await end_session(request, stream.id, "reset")
    return web.json_response(render_stream(request, stream))


async def disable_live_stream(request: web.Request) -> web.Response:
    """``POST /v1/livestreams/{id}/disable``: refuse publishes, end a live session."""
    async with transaction(request) as session:
        stream = await own_stream(request, session, lock=True)
        await queries.set_disabled(session, stream, True)
    log.info("live stream %s disabled by account %s", stream.id, request[ACCOUNT].id)
    await end_session(request, stream.id, "disabled")
    return web.json_response(render_stream(request, stream))


async def enable_live_stream(request: web.Request) -> web.Response:
    """``POST /v1/livestreams/{id}/enable``: accept publishes again."""
    async with transaction(request) as session:
        stream = await own_stream(request, session, lock=True)
        await queries.set_disabled(session, stream, False)
    log.info("live stream %s enabled by account %s", stream.id, request[ACCOUNT].id)
    return web.json_response(await with_owner_state(request, render_stream(request, stream)))


async def complete_live_stream(request: web.Request) -> web.Response:
    """``POST /v1/livestreams/{id}/complete``: end the live session now (200 either way)."""
    async with transaction(request) as session:
        stream = await own_stream(request, session)
    await end_session(request, stream.id, "completed")
    return web.json_response(render_stream(request, stream))
