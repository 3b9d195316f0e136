"""``/v1/livestreams``: create, list, get, update and delete live streams.

Every handler runs behind the JWT middleware (``request[ACCOUNT]`` is set) and sees only the
account's own streams; anything else is a 404. Whether a stream is live, its
``currentSession`` and the state of its restream relays come from its live path on this node
(:func:`api.live.stream_view.live_path`). A new ``restream`` list applies at once to a live stream
(only the changed targets start or stop); ``record``, ``reconnectWindowSeconds``,
``maxDurationSeconds``, ``latencyMode`` and ``renditions`` apply from its next publish.

The helpers the other ``/v1/livestreams/{id}/...`` route modules share live here: the request's
transaction, the account's stream (locked for a change), paging, and the stream object.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from api import queries
from api.cluster.commands import end_everywhere, restream_changed_everywhere
from api.cluster.forwarding import owner_elsewhere
from api.errors import ApiError, FieldError, NotFound
from api.keys import (
    ACCOUNT,
    DB_SESSIONMAKER,
    DELETION_SWEEPER,
    FORWARDER,
    PATHS,
    PLAYBACK_GUARD,
    RTMP_PORT,
    RTMPS_PORT,
    SETTINGS,
)
from api.live.publish_auth import grant_for
from api.live.stream_view import live_path, live_status
from api.models import LiveStream
from api.routes.owner_state import clustered, with_owner_state, with_owners_state
from api.schemas.current_session import CurrentSessionOutput, current_session_output
from api.schemas.livestreams import (
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
from api.schemas.restream import check_target_ids
from workers.events import EndReason
from workers.renditions import encode_renditions
from workers.supervisor import OutputStatus

log = logging.getLogger(__name__)

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
MAX_PAGE = 1_000_000_000
MAX_NAME_FILTER = 256
STATUS_FILTERS = ("live", "idle", "disabled")
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
    check_target_ids(body.restream, (), "restream")
    async with transaction(request) as session:
        stream = await queries.create_live_stream(
            session,
            request[ACCOUNT].id,
            body.name,
            body.record,
            _specs(body.restream),
            reconnect_window_seconds=body.reconnect_window_seconds,
            max_duration_seconds=body.max_duration_seconds,
            latency_mode=body.latency_mode,
            playback_policy=body.playback_policy,
            renditions=encode_renditions(body.renditions),
        )
    log.info("live stream %s created by account %s", stream.id, request[ACCOUNT].id)
    headers = {"Location": f"/v1/livestreams/{stream.id}"}
    return web.json_response(render_stream(request, stream), status=201, headers=headers)


async def list_live_streams(request: web.Request) -> web.Response:
    """``GET /v1/livestreams?page=&perPage=&status=&name=`` -> one page, newest first."""
    page, per_page = page_params(request)
    filters = _stream_filter(request)
    async with transaction(request) as session:
        streams, total = await queries.list_live_streams(
            session,
            request[ACCOUNT].id,
            offset=(page - 1) * per_page,
            limit=per_page,
            filters=filters,
        )
    listing = LiveStreamPage(
        page_info=page_info(page, per_page, total),
        data=[stream_output(request, stream) for stream in streams],
    ).model_dump(by_alias=True)
    listing["data"] = await with_owners_state(request, listing["data"])
    return web.json_response(listing)


async def get_live_stream(request: web.Request) -> web.StreamResponse:
    """``GET /v1/livestreams/{id}``: from the node the stream is live on, if another (only
    that node knows its live session and relays)."""
    async with transaction(request) as session:
        stream = await own_stream(request, session)
    owner = await owner_elsewhere(request, stream.id)
    if owner is not None:
        path = f"/v1/livestreams/{stream.id}"
        # The console's session cookie authenticates like the token (the owner shares the
        # session table); a GET needs no CSRF header.
        also = ("Authorization", "Cookie")
        return await request.app[FORWARDER].forward(request, owner, path, also=also)
    return web.json_response(render_stream(request, stream))


async def update_live_stream(request: web.Request) -> web.Response:
    """``PATCH``/``POST /v1/livestreams/{id}``: change the fields given."""
    _check_stream_id(request)
    body = validate_body(LiveStreamUpdate, await read_json_object(request), _context(request))
    given = body.model_fields_set
    async with transaction(request) as session:
        stream = await own_stream(request, session, lock=True)
        if "restream" in given:
            check_target_ids(body.restream, {t.id for t in stream.targets}, "restream")
        if given:
            await queries.update_live_stream(
                session,
                stream,
                name=body.name if "name" in given else None,
                record=body.record if "record" in given else None,
                targets=_specs(body.restream) if "restream" in given else None,
                reconnect_window_seconds=body.reconnect_window_seconds
                if "reconnect_window_seconds" in given
                else None,
                max_duration_seconds=body.max_duration_seconds
                if "max_duration_seconds" in given
                else None,
                latency_mode=body.latency_mode if "latency_mode" in given else None,
                playback_policy=body.playback_policy if "playback_policy" in given else None,
                renditions=encode_renditions(body.renditions) if "renditions" in given else None,
            )
    if "playback_policy" in given:
        request.app[PLAYBACK_GUARD].forget_stream(stream.id)
    if "restream" in given:
        await apply_restream(request, stream)
    return web.json_response(await with_owner_state(request, render_stream(request, stream)))


async def delete_live_stream(request: web.Request) -> web.Response:
    """``DELETE /v1/livestreams/{id}``: soft-delete, end a live session, withdraw its
    recordings (404 from now on; files removed in the background), return the object."""
    async with transaction(request) as session:
        stream = await own_stream(request, session, lock=True)
        await queries.delete_live_stream(session, stream)
    log.info("live stream %s deleted by account %s", stream.id, request[ACCOUNT].id)
    await end_session(request, stream.id, "deleted")
    try:
        await request.app[DELETION_SWEEPER].remove_recordings([stream.id])
    except Exception:  # the deletion stands; the next sweep removes them
        log.exception("removing the recordings of deleted stream %s failed", stream.id)
    return web.json_response(render_stream(request, stream, live=False))


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


async def own_stream(
    request: web.Request, session: AsyncSession, *, lock: bool = False
) -> LiveStream:
    """The live stream ``{id}`` of the request's account, or a 404. With ``lock``, concurrent
    changes to the stream wait until this transaction ends (use it before changing it)."""
    stream_id = _check_stream_id(request)
    find = queries.lock_live_stream if lock else queries.get_live_stream
    stream = await find(session, request[ACCOUNT].id, stream_id)
    if stream is None:
        raise NotFound("live stream not found")
    return stream


async def apply_restream(request: web.Request, stream: LiveStream) -> None:
    """Relay a live ``stream`` to its (committed) target list from now on, here or on the node
    it is live on."""
    await restream_changed_everywhere(request.app, stream.id, grant_for(stream).restream)


async def end_session(request: web.Request, stream_id: str, reason: EndReason) -> bool:
    """End the live session of ``stream_id`` (after the change that ends it was committed),
    here or on the node it is live on; a failure is logged, not raised: the change stands
    either way. Returns whether it was live here."""
    return await end_everywhere(request.app, stream_id, reason)


def _context(request: web.Request) -> dict[str, object]:
    return {"allow_private_targets": request.app[SETTINGS].allow_private_targets}


def _specs(targets: Sequence[RestreamTargetInput]) -> list[queries.TargetSpec]:
    return [queries.TargetSpec(t.url, t.stream_key, t.target_id or t.id) for t in targets]


def validation_error(field: str, message: str) -> ApiError:
    """The 400 ``validation_error`` for one query parameter or field."""
    return ApiError(400, message, code="validation_error", details=[FieldError(field, message)])


def _query_int(request: web.Request, name: str, *, default: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw.isascii() and raw.isdigit() and len(raw) <= 10 and 1 <= int(raw) <= maximum:
        return int(raw)
    raise validation_error(name, f"{name} must be an integer from 1 to {maximum}")


def page_params(
    request: web.Request, *, default_per_page: int = DEFAULT_PER_PAGE
) -> tuple[int, int]:
    """``page`` and ``perPage`` of the query (1-based; 400 when malformed)."""
    page = _query_int(request, "page", default=1, maximum=MAX_PAGE)
    per_page = _query_int(request, "perPage", default=default_per_page, maximum=MAX_PER_PAGE)
    return page, per_page


def page_info(page: int, per_page: int, total: int) -> PageInfo:
    """Where page ``page`` of ``total`` items is."""
    return PageInfo(current_page=page, per_page=per_page, last_page=max(1, -(-total // per_page)))


def _stream_filter(request: web.Request) -> queries.StreamFilter:
    status = request.query.get("status")
    if status is not None and status not in STATUS_FILTERS:
        raise validation_error("status", "status must be one of live, idle, disabled")
    name = request.query.get("name")
    if name is not None and (len(name) > MAX_NAME_FILTER or "\x00" in name):
        message = f"name must be at most {MAX_NAME_FILTER} characters, without NUL"
        raise validation_error("name", message)
    live_ids = live_stream_ids(request.app) if status in ("live", "idle") else frozenset()
    return queries.StreamFilter(
        status,  # type: ignore[arg-type]
        live_ids,
        name or None,
        ids=_id_filter(request),
        live_leases=clustered(request),
    )


def _id_filter(request: web.Request) -> frozenset[str] | None:
    ids = request.query.getall("id", [])
    if not ids:
        return None
    if len(ids) > MAX_PER_PAGE or not all(_STREAM_ID.fullmatch(i) for i in ids):
        message = f"id must be a stream id (24 hex digits), given at most {MAX_PER_PAGE} times"
        raise validation_error("id", message)
    return frozenset(ids)


def live_stream_ids(app: web.Application) -> frozenset[str]:
    """The streams with a live session on this node (also inside a reconnect window)."""
    return frozenset(path.stream_id for path in app[PATHS].paths() if not path.ending)


def render_stream(
    request: web.Request, stream: LiveStream, *, live: bool | None = None
) -> dict[str, object]:
    """The stream object of ``stream`` as JSON-ready data."""
    return stream_output(request, stream, live=live).model_dump(by_alias=True)


def stream_output(
    request: web.Request, stream: LiveStream, *, live: bool | None = None
) -> LiveStreamOutput:
    """The stream object; its live state is read from this node unless ``live`` is False."""
    app = request.app
    settings = app[SETTINGS]
    session = _current_session(app, stream.id) if live is not False else None
    return live_stream_output(
        stream,
        request[ACCOUNT],
        rtmp_base=settings.rtmp_base_url(app[RTMP_PORT]),
        rtmps_base=settings.rtmps_base_url(app.get(RTMPS_PORT)),
        http_base=settings.http_base_url(),
        live=session is not None,
        restream_status=restream_status(request, stream.id),
        current_session=session,
    )


def _current_session(app: web.Application, stream_id: str) -> CurrentSessionOutput | None:
    return current_session_output(live_status(app, stream_id))


def restream_status(request: web.Request, stream_id: str) -> StatusLookup:
    """The relay state of each restream target of ``stream_id`` on this node."""
    path = live_path(request.app, stream_id)

    def lookup(target_id: str) -> OutputStatus | None:
        output = path.outputs.restreams.get(target_id) if path is not None else None
        return output.status() if output is not None else None

    return lookup
