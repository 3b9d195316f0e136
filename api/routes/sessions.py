"""``/v1/livestreams/{id}/sessions``: the history of a stream's live sessions, newest first.

Rows come from ``live_sessions``, which the media side writes as sessions start, reconnect and
end; a session live now has ``endedAt``, ``duration`` and ``endReason`` null.
"""

from __future__ import annotations

from aiohttp import web

from api import queries
from api.routes.livestreams import own_stream, page_info, page_params, transaction
from api.schemas.sessions import SessionPage, session_output


def register(router: web.UrlDispatcher) -> None:
    """Add the session history route to ``router``."""
    router.add_get("/v1/livestreams/{id}/sessions", list_sessions, allow_head=False)


async def list_sessions(request: web.Request) -> web.Response:
    """``GET /v1/livestreams/{id}/sessions?page=&perPage=`` -> ``{pageInfo, data}``."""
    page, per_page = page_params(request)
    async with transaction(request) as session:
        stream = await own_stream(request, session)
        rows, total = await queries.list_live_sessions(
            session, stream.id, offset=(page - 1) * per_page, limit=per_page
        )
    listing = SessionPage(
        page_info=page_info(page, per_page, total), data=[session_output(row) for row in rows]
    )
    return web.json_response(listing.model_dump(by_alias=True))
