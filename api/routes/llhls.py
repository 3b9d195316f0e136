"""Live playback of a stream in low-latency mode, from the memory of its live path on this node
(:class:`workers.llhls_output.LowLatencyOutput`), at the same URLs as standard mode.

- ``index.m3u8``: the media playlist (RFC 8216bis), full or as a delta update
  (``_HLS_skip``); a blocking reload (``_HLS_msn``, ``_HLS_part``) waits until the playlist
  holds that segment or part, at most three target durations (then 503), and one asking too far
  ahead is a 400 (:func:`workers.llhls.reload_decision`). Never cached.
- ``<tag>-init-<n>.mp4``, ``<tag>-part-<n>.m4s``, ``<tag>-seg-<msn>.m4s`` (the tag names the
  session and its ownership, so no later session reuses a name): initialization segments, parts and
  segments while they are in the window, immutable. A request for the part the playlist hints
  (``EXT-X-PRELOAD-HINT``), or one of the next few, waits until it exists, like a blocking
  reload; a segment being filled is answered once it is complete.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from aiohttp import web

from api.errors import ApiError, NotFound
from api.keys import LOW_LATENCY_ENDED, PATHS, SETTINGS
from api.playback_tokens import with_token
from workers.llhls import Answer, Reject, reload_decision
from workers.llhls_ladder import LowLatencyPlayback
from workers.llhls_output import LowLatencyOutput

PLAYLIST_CACHE_CONTROL = "no-cache"
MEDIA_CACHE_CONTROL = "public, max-age=86400, immutable"
PARTS_AHEAD = 3
"""A part request waits when it is at most this many parts past the last one published."""
_NAME = re.compile(r"(init|part|seg)-(\d{1,18})\.(mp4|m4s)")
_CONTENT_TYPES = {"mp4": "video/mp4", "m4s": "video/iso.segment"}


def low_latency_output(request: web.Request, stream_id: str) -> LowLatencyOutput | None:
    """The low-latency output of ``stream_id``'s live path on this node, if it has one (or
    had one that ended a short while ago: :class:`workers.llhls_output.EndedOutputs`)."""
    path = request.app[PATHS].get(stream_id)
    output = path.outputs.hls if path is not None else None
    if isinstance(output, LowLatencyOutput):
        request.app[LOW_LATENCY_ENDED].remember(stream_id, output)
        return output
    return request.app[LOW_LATENCY_ENDED].get(stream_id) if path is None else None


async def playlist(
    request: web.Request, output: LowLatencyPlayback, token: str | None = None
) -> web.Response:
    """The media playlist, once it holds what a blocking reload asks for (with ``token``, a
    signed stream's playback token, in each of its URIs)."""
    stream = output.stream
    decision = reload_decision(dict(request.query), stream.position)
    if isinstance(decision, Reject):
        raise ApiError(400, decision.reason)
    if not isinstance(decision, Answer):
        msn, part = decision.msn, decision.part
        held = await _wait(output, lambda: stream.position.has(msn, part))
        if not held and not stream.ended:
            raise ApiError(503, "the requested part did not come in time")
    if not stream.segments:  # as in standard mode: no playlist before the first media
        raise NotFound("playlist not found")
    body = output.playlists.get(skip=decision.skip)
    if token is not None:
        body = with_token(body, token)
    return _response(request, body, "application/vnd.apple.mpegurl", PLAYLIST_CACHE_CONTROL)


async def media(
    request: web.Request, output: LowLatencyPlayback, name: str, cache: str = MEDIA_CACHE_CONTROL
) -> web.Response:
    """An initialization segment, a part or a segment, from memory (``cache``: its
    ``Cache-Control``)."""
    stream = output.stream
    tag = f"{stream.name_tag}-" if stream.name_tag else ""
    match = _NAME.fullmatch(name[len(tag) :]) if name.startswith(tag) else None
    if match is None:  # includes another session's names: never this session's media
        raise NotFound("segment not found")
    kind, number, extension = match[1], int(match[2]), match[3]
    data: bytes | None = None
    if kind == "init" and extension == "mp4":
        init = stream.maps.get(number)
        data = init.data if init is not None else None
    elif kind == "part" and extension == "m4s":
        if stream.next_part_number <= number < stream.next_part_number + PARTS_AHEAD:
            await _wait(output, lambda: stream.part(number) is not None)
        found = stream.part(number)
        data = found.data if found is not None else None
    elif kind == "seg" and extension == "m4s":
        if stream.position.next_msn <= number <= stream.position.next_msn + 1:
            await _wait(output, lambda: stream.segment(number) is not None)
        segment = stream.segment(number)
        data = segment.data if segment is not None else None
    if data is None:
        raise NotFound("segment not found")
    return _response(request, data, _CONTENT_TYPES[extension], cache)


async def _wait(output: LowLatencyPlayback, ready: Callable[[], bool]) -> bool:
    """Wait for ``ready()`` (:meth:`LowLatencyOutput.wait_for`: woken a batch per turn of the
    loop, since every viewer is woken by the same part)."""
    if ready():
        return True
    return await output.wait_for(ready, output.blocking_seconds)


def _response(request: web.Request, body: bytes, content_type: str, cache: str) -> web.Response:
    headers = {
        "Content-Type": content_type,
        "Cache-Control": cache,
        "Access-Control-Allow-Origin": request.app[SETTINGS].cors_allow_origin,
    }
    return web.Response(body=body, headers=headers)
