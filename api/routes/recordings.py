"""``/v1/livestreams/{id}/recordings``: list a stream's recordings, delete one with its files.

Same rules as the live stream routes: behind the JWT middleware, only the account's own streams,
anything else a 404. The recording of a session that is live right now reports its current
size and duration (from its live path) and cannot be deleted until the session ends.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web

from api import queries
from api.errors import ApiError, NotFound
from api.keys import RECORDING_STORAGE, SETTINGS
from api.live.stream_view import live_path
from api.models import Recording
from api.routes.livestreams import MAX_PER_PAGE, own_stream, page_info, page_params, transaction
from api.schemas.livestreams import RecordingOutput, RecordingPage, recording_output
from workers.recording import RecordingSummary

log = logging.getLogger(__name__)

_RECORDING_ID = re.compile(r"[0-9a-f]{24}")
RECORDINGS_PER_PAGE = MAX_PER_PAGE
"""Default page size of the recordings list: large, as the list was not paged before."""


def register(router: web.UrlDispatcher) -> None:
    """Add the recording routes to ``router``."""
    router.add_get("/v1/livestreams/{id}/recordings", list_recordings, allow_head=False)
    router.add_delete("/v1/livestreams/{id}/recordings/{recordingId}", delete_recording)


async def list_recordings(request: web.Request) -> web.Response:
    """``GET /v1/livestreams/{id}/recordings?page=&perPage=`` -> ``{pageInfo, data}``, newest
    first."""
    page, per_page = page_params(request, default_per_page=RECORDINGS_PER_PAGE)
    async with transaction(request) as session:
        stream = await own_stream(request, session)
        recordings, total = await queries.list_recordings(
            session, stream.id, offset=(page - 1) * per_page, limit=per_page
        )
    listing = RecordingPage(
        page_info=page_info(page, per_page, total),
        data=[_output(request, r) for r in recordings],
    )
    return web.json_response(listing.model_dump(by_alias=True))


async def delete_recording(request: web.Request) -> web.Response:
    """``DELETE /v1/livestreams/{id}/recordings/{recordingId}``: remove it and its files."""
    recording_id = request.match_info["recordingId"]
    async with transaction(request) as session:
        stream = await own_stream(request, session)
        recording = None
        if _RECORDING_ID.fullmatch(recording_id):
            recording = await queries.get_recording(session, stream.id, recording_id)
        if recording is None:
            raise NotFound("recording not found")
        running = _running(request, recording)
        if running is not None and running.status == "recording":
            raise ApiError(
                409,
                "the recording is still in progress; delete it after the live session ends",
                code="recording_in_progress",
            )
        output = _output(request, recording)
        await queries.delete_recording(session, recording)
    await request.app[RECORDING_STORAGE].delete(recording_id)
    log.info("recording %s of live stream %s deleted", recording_id, stream.id)
    return web.json_response(output.model_dump(by_alias=True))


def _running(request: web.Request, recording: Recording) -> RecordingSummary | None:
    """The live summary of ``recording`` if it is being recorded on this node now."""
    path = live_path(request.app, recording.live_stream_id)
    running = path.outputs.recording if path is not None else None
    if running is None or running.recording_id != recording.id:
        return None
    return running.summary()


def _output(request: web.Request, recording: Recording) -> RecordingOutput:
    http_base = request.app[SETTINGS].http_base_url()
    return recording_output(recording, http_base=http_base, live=_running(request, recording))
