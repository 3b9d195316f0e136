"""``/v1/livestreams/{id}/restream``: a stream's restream targets one at a time (add, change,
remove), next to replacing the whole list through ``PATCH /v1/livestreams/{id}``.

A change applies at once when the stream is live, on this node or (told over the control bus)
on the node it is live on: only the added, changed or removed target's relay starts, restarts
or stops. A changed target keeps its ``_id``.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web

from api import queries
from api.errors import ApiError, NotFound
from api.keys import SETTINGS
from api.live.stream_view import live_path
from api.models import LiveStream, RestreamTarget
from api.routes.livestreams import (
    apply_restream,
    own_stream,
    render_stream,
    restream_status,
    transaction,
)
from api.routes.owner_state import clustered, with_owner_state
from api.schemas.livestreams import MAX_RESTREAM_TARGETS, read_json_object, validate_body
from api.schemas.restream import (
    RestreamTargetInput,
    RestreamTargetUpdate,
    restream_target_output,
)

log = logging.getLogger(__name__)

_TARGET_ID = re.compile(r"[0-9a-f]{24}")


def register(router: web.UrlDispatcher) -> None:
    """Add the restream target routes to ``router``."""
    router.add_post("/v1/livestreams/{id}/restream", add_target)
    router.add_patch("/v1/livestreams/{id}/restream/{targetId}", update_target)
    router.add_delete("/v1/livestreams/{id}/restream/{targetId}", delete_target)


async def add_target(request: web.Request) -> web.Response:
    """``POST /v1/livestreams/{id}/restream`` -> 201 with the new target (409 past the cap)."""
    body = validate_body(RestreamTargetInput, await read_json_object(request), _context(request))
    async with transaction(request) as session:
        stream = await own_stream(request, session, lock=True)
        if len(stream.targets) >= MAX_RESTREAM_TARGETS:
            raise ApiError(
                409,
                f"the live stream already has {MAX_RESTREAM_TARGETS} restream targets, the "
                "most it can have; remove one first",
                code="restream_target_limit",
            )
        spec = queries.TargetSpec(body.url, body.stream_key)
        target = await queries.add_restream_target(session, stream, spec)
    log.info("live stream %s: restream target %s added", stream.id, target.id)
    await apply_restream(request, stream)
    location = f"/v1/livestreams/{stream.id}/restream/{target.id}"
    return web.json_response(
        await _render(request, stream, target), status=201, headers={"Location": location}
    )


async def update_target(request: web.Request) -> web.Response:
    """``PATCH /v1/livestreams/{id}/restream/{targetId}``: change url and/or streamKey."""
    body = validate_body(RestreamTargetUpdate, await read_json_object(request), _context(request))
    given = body.model_fields_set
    async with transaction(request) as session:
        stream = await own_stream(request, session, lock=True)
        target = _own_target(request, stream)
        if given:
            await queries.update_restream_target(
                session,
                stream,
                target,
                url=body.url if "url" in given else None,
                stream_key=body.stream_key if "stream_key" in given else None,
            )
    if given:
        log.info("live stream %s: restream target %s changed", stream.id, target.id)
        await apply_restream(request, stream)
    return web.json_response(await _render(request, stream, target))


async def delete_target(request: web.Request) -> web.Response:
    """``DELETE /v1/livestreams/{id}/restream/{targetId}`` -> the removed target."""
    async with transaction(request) as session:
        stream = await own_stream(request, session, lock=True)
        target = _own_target(request, stream)
        removed = restream_target_output(target, None).model_dump(by_alias=True)
        await queries.remove_restream_target(session, stream, target)
    log.info("live stream %s: restream target %s removed", stream.id, target.id)
    await apply_restream(request, stream)
    return web.json_response(removed)


def _own_target(request: web.Request, stream: LiveStream) -> RestreamTarget:
    target_id = request.match_info["targetId"]
    if _TARGET_ID.fullmatch(target_id):
        for target in stream.targets:
            if target.id == target_id:
                return target
    raise NotFound("restream target not found")


def _context(request: web.Request) -> dict[str, object]:
    return {"allow_private_targets": request.app[SETTINGS].allow_private_targets}


async def _render(
    request: web.Request, stream: LiveStream, target: RestreamTarget
) -> dict[str, object]:
    """The target, with its relay state on the node the stream is live on."""
    status = restream_status(request, stream.id)(target.id)
    local: dict[str, object] = restream_target_output(target, status).model_dump(by_alias=True)
    if not clustered(request) or live_path(request.app, stream.id) is not None:
        return local
    rendered = await with_owner_state(request, render_stream(request, stream))
    return next((t for t in rendered["restream"] if t.get("_id") == target.id), local)
