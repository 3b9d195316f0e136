"""``/v1/livestreams``: create, list, get, update and delete live streams (seed contract).

Every handler runs behind the JWT middleware (``request[ACCOUNT]`` is set) and sees only the
account's own streams; anything else is a 404. Whether a stream is live comes from ``app[LIVE]``,
the state of its restream relays from ``app[ORCHESTRATOR]``. A new ``restream`` list applies at
once to a live stream (only the changed targets start or stop); a new ``record`` value applies
from its next session.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from api import queries
from api.errors import ApiError, FieldError, NotFound
from api.keys import ACCOUNT, DB_SESSIONMAKER, LIVE, RTMP_PORT, SETTINGS
from api.media import ORCHESTRATOR
from api.models import LiveStream
from api.publish_auth import grant_for
from api.schemas import (
    LiveStreamCreate,
    LiveStreamOutput,
    LiveStreamPage,
    LiveStreamUpdate,
    PageInfo,
    RestreamTargetInput,
    StatusLookup,
    live_stream_output,
    read_json_object,
    validate_body,
)
from workers.supervisor import OutputStatus

log = logging.getLogger(__name__)

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
MAX_PAGE = 1_000_000_000
_STREAM_ID = re.compile(r"[0-9a-f]{24}")


def register(router: web.UrlDispatcher) -> None:
    """Add the live stream routes to ``router``."""
    router.add_post("/v1/livestreams", create_live_stream)
    router.add_get("/v1/livestreams", list_live_streams, allow_head=False)
    router.add_get("/v1/livestreams/{id}", get_live_stream, allow_head=False)
    router.add_patch("/v1/livestreams/{id}", update_live_stream)
    router.add_post("/v1/livestreams/{id}", update_live_stream)
    router.add_delete("/v1/livestreams/{id}", delete_live_stream)


async def create_live_stream(request: web.Request) -> web.Response:
    """``POST /v1/livestreams`` -> 201 with the new live stream."""
    body = validate_body(LiveStreamCreate, await read_json_object(request), _context(request))
    async with transaction(request) as session:
        stream = await queries.create_live_stream(
            session, request[ACCOUNT].id, body.name, body.record, _specs(body.restream)
        )
    log.info("live stream %s created by account %s", stream.id, request[ACCOUNT].id)
    headers = {"Location": f"/v1/livestreams/{stream.id}"}
    return web.json_response(_render(request, stream), status=201, headers=headers)


async def list_live_streams(request: web.Request) -> web.Response:
    """``GET /v1/livestreams?page=&perPage=`` -> one page, newest first."""
    page = _query_int(request, "page", default=1, maximum=MAX_PAGE)
    per_page = _query_int(request, "perPage", default=DEFAULT_PER_PAGE, maximum=MAX_PER_PAGE)
    async with transaction(request) as session:
        streams, total = await queries.list_live_streams(
            session, request[ACCOUNT].id, offset=(page - 1) * per_page, limit=per_page
        )
    listing = LiveStreamPage(
        page_info=PageInfo(
            current_page=page, per_page=per_page, last_page=max(1, -(-total // per_page))
        ),
        data=[_output(request, stream) for stream in streams],
    )
    return web.json_response(listing.model_dump(by_alias=True))


async def get_live_stream(request: web.Request) -> web.Response:
    """``GET /v1/livestreams/{id}``."""
    async with transaction(request) as session:
        stream = await own_stream(request, session)
    return web.json_response(_render(request, stream))


async def update_live_stream(request: web.Request) -> web.Response:
    """``PATCH``/``POST /v1/livestreams/{id}``: change the fields given."""
    _check_stream_id(request)
    body = validate_body(LiveStreamUpdate, await read_json_object(request), _context(request))
    given = body.model_fields_set
    async with transaction(request) as session:
        stream = await own_stream(request, session)
        if given:
            await queries.update_live_stream(
                session,
                stream,
                name=body.name if "name" in given else None,
                record=body.record if "record" in given else None,
                targets=_specs(body.restream) if "restream" in given else None,
            )
    if "restream" in given and request.app[ORCHESTRATOR].update_restream(
        stream.id, grant_for(stream).restream
    ):
        log.info("live stream %s: restream targets changed while live", stream.id)
    return web.json_response(_render(request, stream))


async def delete_live_stream(request: web.Request) -> web.Response:
    """``DELETE /v1/livestreams/{id}``: soft-delete, end a live session, return the object."""
    async with transaction(request) as session:
        stream = await queries.delete_live_stream(session, await own_stream(request, session))
    log.info("live stream %s deleted by account %s", stream.id, request[ACCOUNT].id)
    try:
        await request.app[LIVE].end(stream.id, "deleted")
    except Exception:
        log.exception("ending the live session of deleted stream %s failed", stream.id)
    return web.json_response(_render(request, stream, live=False))


@asynccontextmanager
async def transaction(request: web.Request) -> AsyncIterator[AsyncSession]:
    """One database session and transaction for ``request`` (committed on success)."""
    async with request.app[DB_SESSIONMAKER]() as session, session.begin():
        yield session


def _check_stream_id(request: web.Request) -> str:
    stream_id = request.match_info["id"]
    if not _STREAM_ID.fullmatch(stream_id):
        raise NotFound("live stream not found")
    return stream_id


async def own_stream(request: web.Request, session: AsyncSession) -> LiveStream:
    """The live stream ``{id}`` of the request's account, or a 404."""
    stream_id = _check_stream_id(request)
    stream = await queries.get_live_stream(session, request[ACCOUNT].id, stream_id)
    if stream is None:
        raise NotFound("live stream not found")
    return stream


def _context(request: web.Request) -> dict[str, object]:
    return {"allow_private_targets": request.app[SETTINGS].allow_private_targets}


def _specs(targets: Sequence[RestreamTargetInput]) -> list[queries.TargetSpec]:
    return [queries.TargetSpec(t.url, t.stream_key) for t in targets]


def _query_int(request: web.Request, name: str, *, default: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw.isascii() and raw.isdigit() and len(raw) <= 10 and 1 <= int(raw) <= maximum:
        return int(raw)
    message = f"{name} must be an integer from 1 to {maximum}"
    raise ApiError(400, message, code="validation_error", details=[FieldError(name, message)])


def _render(
    request: web.Request, stream: LiveStream, *, live: bool | None = None
) -> dict[str, object]:
    return _output(request, stream, live=live).model_dump(by_alias=True)


def _output(
    request: web.Request, stream: LiveStream, *, live: bool | None = None
) -> LiveStreamOutput:
    app = request.app
    settings = app[SETTINGS]
    return live_stream_output(
        stream,
        request[ACCOUNT],
        rtmp_base=settings.rtmp_base_url(app[RTMP_PORT]),
        http_base=settings.http_base_url(),
        live=app[LIVE].is_live(stream.id) if live is None else live,
        restream_status=_restream_status(request, stream.id),
    )


def _restream_status(request: web.Request, stream_id: str) -> StatusLookup:
    outputs = request.app[ORCHESTRATOR].get(stream_id)

    def lookup(target_id: str) -> OutputStatus | None:
        output = outputs.restreams.get(target_id) if outputs is not None else None
        return output.status() if output is not None else None

    return lookup
