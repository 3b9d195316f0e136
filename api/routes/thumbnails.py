"""Thumbnails (no auth): a recent frame of a live stream, or a frame of a recording, as JPEG or
PNG.

- ``/live/{id}/thumbnail.jpg`` (``.png``): the first frame of the stream's newest segment,
  made at most once every :data:`LIVE_INTERVAL_SECONDS` per stream, format and size
  (:mod:`workers.thumbnail_cache`), cached by clients as long.
- ``/recordings/{recordingId}/thumbnail.jpg`` (``.png``) ``?time=SECONDS``: the frame nearest
  ``time`` (default :data:`workers.thumbnail_sources.DEFAULT_RECORDING_SECONDS`), immutable;
  a recording on another node's local disk is made by that node (as its playback is served).

``?width=`` and ``?height=`` (each :data:`~workers.thumbnail_codec.MIN_SIDE` to
:data:`~workers.thumbnail_codec.MAX_SIDE`) scale the frame keeping its aspect ratio; with both,
it fits inside that box. Access is playback's: a signed stream's thumbnails need its ``?token=``
(:class:`api.playback_tokens.PlaybackGuard`), checked before anything else is looked at.

``HEAD`` is answered as ``GET`` is, without the body: whether the media has a frame is only
known by decoding it, so ``HEAD`` makes (or reuses) the same cached thumbnail.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from api.cluster.forwarding import owner_elsewhere
from api.errors import ApiError, FieldError, NotFound
from api.keys import FORWARDER, PATHS, PLAYBACK_GUARD, RECORDING_STORAGE, SETTINGS, THUMBNAILS
from api.recording_storage import object_storage, stored_playlist
from api.routes.playback import forward_to_writer
from workers.llhls_output import LowLatencyOutput
from workers.storage import LocalRecordingStorage
from workers.thumbnail_cache import ThumbnailKey
from workers.thumbnail_codec import (
    FORMATS,
    MAX_SIDE,
    MIN_SIDE,
    NoVideo,
    Thumbnail,
    ThumbnailUnavailable,
    render,
)
from workers.thumbnail_sources import (
    TimeBeyondEnd,
    latest_live_segment,
    latest_low_latency_media,
    read_segment,
    recorded_point,
)

LIVE_INTERVAL_SECONDS = 5.0
"""A live thumbnail is made again at most this often (per stream, format and size)."""
RECORDING_TTL_SECONDS = 3600.0
"""How long a recording's thumbnail stays in the server's cache (it never changes)."""
LIVE_CACHE_CONTROL = "public, max-age=5"
RECORDING_CACHE_CONTROL = "public, max-age=86400, immutable"
SIGNED_LIVE_CACHE_CONTROL = "private, max-age=5"
SIGNED_RECORDING_CACHE_CONTROL = "private, max-age=86400, immutable"
_ID = re.compile(r"[0-9a-f]{24}")
_QUERY_NAMES = ("width", "height", "time")
NAMES = tuple(f"thumbnail.{extension}" for extension in FORMATS)
"""The names of a stream's (or recording's) thumbnails: the playback routes' ``{segment}``
must not match them (:func:`api.routes.playback.register`)."""


def register(router: web.UrlDispatcher) -> None:
    """Add the thumbnail routes to ``router`` (GET and HEAD)."""
    for extension in FORMATS:
        router.add_get(f"/live/{{id}}/thumbnail.{extension}", live_thumbnail)
        router.add_get(f"/recordings/{{recordingId}}/thumbnail.{extension}", recording_thumbnail)


async def live_thumbnail(request: web.Request) -> web.StreamResponse:
    """``GET /live/{id}/thumbnail.jpg|png?width=&height=``: a recent frame of a live stream."""
    stream_id = request.match_info["id"]
    extension = _extension(request)
    guard = request.app[PLAYBACK_GUARD]
    if not _ID.fullmatch(stream_id) or await guard.policy(stream_id) is None:
        raise NotFound("stream not found")
    signed = await guard.check(stream_id, request.query.get("token"))
    width, height = _size(request)
    owner = await owner_elsewhere(request, stream_id)
    if owner is not None:
        path = f"/live/{stream_id}/thumbnail.{extension}"
        return await request.app[FORWARDER].forward(request, owner, path, query=_QUERY_NAMES)
    live = request.app[PATHS].get(stream_id)
    if live is None:
        raise ApiError(404, "the stream is not live", code="not_live")
    output = live.outputs.hls
    settings = request.app[SETTINGS]

    async def make() -> Thumbnail:
        if isinstance(output, LowLatencyOutput):
            media = latest_low_latency_media(output.stream)
        else:
            media = await asyncio.to_thread(latest_live_segment, settings.live_dir, stream_id)
        if media is None:
            raise ApiError(
                503,
                "the stream has no segment yet; try again in a few seconds",
                code="thumbnail_not_ready",
                headers={"Retry-After": "2"},
            )
        return await _render(request, media, extension, width, height, None)

    key = ThumbnailKey(stream_id, "live", extension, width, height)
    cache = SIGNED_LIVE_CACHE_CONTROL if signed else LIVE_CACHE_CONTROL
    thumbnail = await _cached(request, key, make, LIVE_INTERVAL_SECONDS)
    return _response(request, thumbnail, cache)


async def recording_thumbnail(request: web.Request) -> web.StreamResponse:
    """``GET /recordings/{recordingId}/thumbnail.jpg|png?time=&width=&height=``."""
    recording_id = request.match_info["recordingId"]
    extension = _extension(request)
    guard = request.app[PLAYBACK_GUARD]
    stream_id = (
        await guard.stream_of_recording(recording_id) if _ID.fullmatch(recording_id) else None
    )
    if stream_id is None:
        raise NotFound("recording not found")
    signed = await guard.check(stream_id, request.query.get("token"))
    width, height = _size(request)
    at = _time(request)

    async def make() -> Thumbnail:
        playlist = await _recording_playlist(request, recording_id)
        try:
            point = recorded_point(playlist.decode("utf-8", errors="replace"), at)
        except TimeBeyondEnd as exc:
            raise ApiError(
                400,
                str(exc),
                code="time_out_of_range",
                details=[FieldError("time", f"at most {exc.duration:.3f}")],
            ) from None
        media = b""
        for name in point.segment.files[::-1]:  # the initialization segment first
            data = await _recorded_file(request, recording_id, name)
            media += data
        return await _render(request, media, extension, width, height, point.offset)

    key = ThumbnailKey(recording_id, "recording", extension, width, height, at)
    if not await _held_here(request, recording_id):  # on another node's disk: it makes it
        path = f"/recordings/{recording_id}/thumbnail.{extension}"
        missing = NotFound("playlist not found")
        return await forward_to_writer(request, recording_id, path, missing, query=_QUERY_NAMES)
    cache = SIGNED_RECORDING_CACHE_CONTROL if signed else RECORDING_CACHE_CONTROL
    thumbnail = await _cached(request, key, make, RECORDING_TTL_SECONDS)
    return _response(request, thumbnail, cache)


async def _cached(
    request: web.Request, key: ThumbnailKey, make: Callable[[], Awaitable[Thumbnail]], ttl: float
) -> Thumbnail:
    """The thumbnail of ``key`` from the app's cache (``make()`` when it has none fresh)."""
    try:
        return await request.app[THUMBNAILS].get(key, make, ttl)
    except NoVideo:
        raise ApiError(404, "the stream has no video", code="no_video") from None
    except ThumbnailUnavailable as exc:
        raise ApiError(404, str(exc), code="no_frame") from None


async def _render(
    request: web.Request,
    media: bytes,
    extension: str,
    width: int | None,
    height: int | None,
    at: float | None,
) -> Thumbnail:
    image_format = FORMATS[extension]
    return await request.app[THUMBNAILS].run_decode(
        lambda: render(media, image_format, width=width, height=height, at=at)
    )


async def _held_here(request: web.Request, recording_id: str) -> bool:
    """Whether this node can read the recording: from object storage, or on its own disk."""
    storage = request.app[RECORDING_STORAGE]
    if not isinstance(storage, LocalRecordingStorage):
        return True
    return await asyncio.to_thread(storage.directory(recording_id).is_dir)


async def _recording_playlist(request: web.Request, recording_id: str) -> bytes:
    objects = object_storage(request.app)
    if objects is not None:
        return await stored_playlist(objects, recording_id)
    data = await _recorded_file(request, recording_id, "index.m3u8")
    return data


async def _recorded_file(request: web.Request, recording_id: str, name: str) -> bytes:
    """One file of a recording: from local disk, or from object storage (through a presigned
    URL, as players get it)."""
    storage = request.app[RECORDING_STORAGE]
    if isinstance(storage, LocalRecordingStorage):
        data = await asyncio.to_thread(read_segment, storage.directory(recording_id), name)
    else:
        data = await _download(await storage.presigned_url(recording_id, name, 60))
    if data is None:
        raise NotFound("playlist not found" if name == "index.m3u8" else "segment not found")
    return data


async def _download(url: str) -> bytes | None:
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as response:
        if response.status != 200:
            return None
        return await response.read()


def _extension(request: web.Request) -> str:
    return request.path.rsplit(".", 1)[-1]


def _size(request: web.Request) -> tuple[int | None, int | None]:
    return _side(request, "width"), _side(request, "height")


def _side(request: web.Request, name: str) -> int | None:
    text = request.query.get(name)
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or not MIN_SIDE <= int(text) <= MAX_SIDE:
        message = f"{name} must be a whole number of pixels from {MIN_SIDE} to {MAX_SIDE}"
        raise ApiError(400, message, code="validation_error", details=[FieldError(name, message)])
    return int(text)


def _time(request: web.Request) -> float | None:
    text = request.query.get("time")
    if text is None:
        return None
    try:
        at = float(text)
    except ValueError:
        at = -1.0
    if not math.isfinite(at) or at < 0:
        message = "time must be a number of seconds from the recording's start, 0 or more"
        raise ApiError(400, message, code="validation_error", details=[FieldError("time", message)])
    return round(at, 3)


def _response(request: web.Request, thumbnail: Thumbnail, cache_control: str) -> web.Response:
    headers = {
        "Content-Type": thumbnail.content_type,
        "Cache-Control": cache_control,
        "Access-Control-Allow-Origin": request.app[SETTINGS].cors_allow_origin,
    }
    return web.Response(body=thumbnail.data, headers=headers)
