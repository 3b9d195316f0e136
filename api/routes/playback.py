"""HLS playback (no auth): live playlists/segments by stream id, recordings by recording id.

- ``/live/{id}/index.m3u8`` and ``/live/{id}/{segment}``: the live window (with a ladder,
  ``index.m3u8`` is the multivariant playlist and ``<rendition>.m3u8`` each rendition's), from
  ``<live_dir>/<id>/`` (in low-latency mode from memory: :mod:`api.routes.llhls`); when the
  stream is live on another node, that node's answer (:mod:`api.cluster.forwarding`).
- ``/live/{id}/multivariant.m3u8``: in low-latency mode, a multivariant playlist listing
  ``index.m3u8`` with the ``CODECS`` of its media.
- ``/recordings/{recordingId}/index.m3u8`` and ``/recordings/{recordingId}/{segment}``: one
  recording, from ``<recordings_dir>/<recordingId>/`` (an ``EVENT`` playlist while it records).
- ``/live/{id}/storage/index.m3u8`` (the stream's ``recordingUrl``): the playlist of the stream's
  latest recording, its segment URIs pointing at ``/recordings/{recordingId}/`` so a player
  keeps fetching the same recording even when a new one begins.

Only ``index.m3u8`` and segment names matching a strict whitelist are served; everything else is
a JSON 404. Paths are resolved and must still be inside the stream's or recording's directory, so
neither ``..`` (in any encoding) nor a symlink can lead out of it. Nothing here redirects, but
recorded segments in object storage (a redirect to a presigned URL).

A stream whose ``playbackPolicy`` is ``signed`` (and its recordings) is only played with a valid
``?token=`` (:mod:`api.playback_tokens`; otherwise 403 ``forbidden``); its playlists carry the
token in every URI, and its media is ``private`` (see :data:`SIGNED_MEDIA_CACHE_CONTROL`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from pathlib import Path

from aiohttp import web

from api import queries
from api.cluster.forwarding import Owner, owner_elsewhere
from api.errors import ApiError, NotFound
from api.keys import DB_SESSIONMAKER, FORWARDER, PLAYBACK_GUARD, SETTINGS
from api.playback_tokens import with_token
from api.recording_storage import object_storage, segment_redirect, stored_playlist
from api.routes import llhls
from api.routes.owner_state import clustered
from workers.llhls_ladder import LowLatencyPlayback
from workers.llhls_multivariant import multivariant_playlist
from workers.llhls_output import LowLatencyOutput
from workers.renditions import SOURCE

PLAYLIST_NAME = "index.m3u8"
MULTIVARIANT_NAME = "multivariant.m3u8"
_ID = re.compile(r"[0-9a-f]{24}")
_SEGMENT_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}\.(ts|m4s|mp4|aac)")
_RENDITION_PLAYLIST = re.compile(r"[a-z0-9]{1,16}\.m3u8")
"""A rendition's media playlist next to an adaptive-bitrate stream's multivariant
``index.m3u8`` (``source.m3u8``, ``720p.m3u8``: :mod:`workers.ladder_hls`)."""
_CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".aac": "audio/aac",
}
PLAYLIST_CACHE_CONTROL = "no-cache"
SEGMENT_CACHE_CONTROL = "public, max-age=86400, immutable"
SIGNED_MEDIA_CACHE_CONTROL = "private, max-age=86400, immutable"
"""A signed stream's media: its URL carries the token, but a shared cache would go on serving it
after the token expired or its key was deleted, so only the viewer's own cache may keep it."""


def register(router: web.UrlDispatcher, reserved: Iterable[str] = ()) -> None:
    """Add the playback routes to ``router`` (GET and HEAD), best registered before any other
    route under ``/live/{id}/`` and ``/recordings/{recordingId}/``: aiohttp tries the routes
    under a path's first segment in the order they were added, so a low-latency viewer's
    playlist is resolved by the first route tried and a part by the second. ``{segment}``
    matches none of the ``reserved`` names (other routes' names, registered after it), nor,
    under ``/live``, ``multivariant.m3u8``; the route templates stay ``.../{segment}``."""
    names = tuple(reserved)
    live_segment_name = segment_pattern((MULTIVARIANT_NAME, *names))
    router.add_get("/live/{id}/index.m3u8", live_playlist)
    router.add_get(f"/live/{{id}}/{{segment:{live_segment_name}}}", live_segment)
    router.add_get(f"/live/{{id}}/{MULTIVARIANT_NAME}", live_multivariant_playlist)
    router.add_get("/live/{id}/storage/index.m3u8", latest_recording_playlist)
    router.add_get("/recordings/{recordingId}/index.m3u8", recording_playlist)
    recorded_name = segment_pattern(names)
    router.add_get(f"/recordings/{{recordingId}}/{{segment:{recorded_name}}}", recording_segment)


def segment_pattern(excluded: Iterable[str]) -> str:
    """The pattern of a ``{segment}`` path parameter (aiohttp's default, one path segment)
    that matches none of the ``excluded`` names."""
    names = "|".join(re.escape(name) for name in excluded)
    return f"(?!(?:{names})$)[^{{}}/]+" if names else "[^{}/]+"


async def live_playlist(request: web.Request) -> web.StreamResponse:
    """``GET /live/{id}/index.m3u8``: the live playlist (404 when the stream is not live); of
    a stream live on another node, that node's."""
    stream_id = request.match_info["id"]
    token = await _signed(request, stream_id)
    owner = await _owner_elsewhere(request)
    if owner is not None:
        path = f"/live/{stream_id}/{PLAYLIST_NAME}"
        return await request.app[FORWARDER].forward(request, owner, path, blocking=True)
    low_latency = llhls.low_latency_output(request, stream_id)
    if low_latency is not None and low_latency.has_ladder:
        variants = low_latency.multivariant()
        if variants is None:
            raise NotFound("playlist not found")
        return _playlist_response(request, variants, token)
    if low_latency is not None:
        return await llhls.playlist(request, low_latency, token)
    body = await _read_playlist(request.app[SETTINGS].live_dir, stream_id)
    return _playlist_response(request, body, token)


async def live_multivariant_playlist(request: web.Request) -> web.StreamResponse:
    """``GET /live/{id}/multivariant.m3u8``: a multivariant playlist whose one variant is the
    media playlist at ``index.m3u8``, with its ``CODECS``, ``RESOLUTION`` and ``BANDWIDTH``
    (:mod:`workers.llhls_multivariant`); with a ladder, the ladder's, as at ``index.m3u8``;
    while the stream is live in low-latency mode only."""
    stream_id = request.match_info["id"]
    token = await _signed(request, stream_id)
    owner = await _owner_elsewhere(request)
    if owner is not None:
        path = f"/live/{stream_id}/{MULTIVARIANT_NAME}"
        return await request.app[FORWARDER].forward(request, owner, path)
    low_latency = llhls.low_latency_output(request, stream_id)
    body = None
    if low_latency is not None and low_latency.has_ladder:
        body = low_latency.multivariant()  # the same as index.m3u8
    elif low_latency is not None:
        body = multivariant_playlist(low_latency.stream, PLAYLIST_NAME)
    if body is None:
        raise NotFound("no multivariant playlist: the stream is not live in low-latency mode")
    return _playlist_response(request, body, token)


async def live_segment(request: web.Request) -> web.StreamResponse:
    """``GET /live/{id}/{segment}``: one live segment (of a stream live on another node, that
    node's)."""
    stream_id, name = request.match_info["id"], request.match_info["segment"]
    token = await _signed(request, stream_id)
    rendition = _RENDITION_PLAYLIST.fullmatch(name) is not None
    served = rendition or _SEGMENT_NAME.fullmatch(name)
    owner = await _owner_elsewhere(request) if served else None
    if owner is not None:
        path = f"/live/{stream_id}/{name}"
        return await request.app[FORWARDER].forward(request, owner, path, blocking=True)
    low_latency = llhls.low_latency_output(request, stream_id)
    if low_latency is not None and rendition:
        return await llhls.playlist(request, _low_latency_rendition(low_latency, name), token)
    if low_latency is not None:
        cache = SIGNED_MEDIA_CACHE_CONTROL if token else llhls.MEDIA_CACHE_CONTROL
        return await llhls.media(request, _rendition_of_media(low_latency, name), name, cache)
    if rendition:
        body = await _read_playlist(request.app[SETTINGS].live_dir, stream_id, name)
        return _playlist_response(request, body, token)
    return await _segment(request, request.app[SETTINGS].live_dir, stream_id, token)


def _low_latency_rendition(output: LowLatencyOutput, name: str) -> LowLatencyPlayback:
    """The rendition of a low-latency ladder whose media playlist is ``name``."""
    if output.has_ladder and name == f"{SOURCE}.m3u8":
        return output
    found = output.rendition(name)
    if found is None:
        raise NotFound("playlist not found")
    return found


def _rendition_of_media(output: LowLatencyOutput, name: str) -> LowLatencyPlayback:
    """The rendition a low-latency media name belongs to (its rung's name tag starts it)."""
    for rung in (*output.rungs, *output.dropped):
        if name.startswith(f"{rung.stream.name_tag}-"):
            return rung
    return output


async def _signed(request: web.Request, stream_id: str) -> str | None:
    """The playback token to carry on when ``stream_id`` is signed (and the request's token
    is valid for it; if not, 403); ``None`` for a public stream."""
    if not _ID.fullmatch(stream_id):
        return None
    token = request.query.get("token")
    signed = await request.app[PLAYBACK_GUARD].check(stream_id, token)
    return token if signed else None


async def _signed_recording(request: web.Request, recording_id: str) -> str | None:
    """As :func:`_signed`, for a recording: its stream's policy decides."""
    if not _ID.fullmatch(recording_id):
        return None
    stream_id = await request.app[PLAYBACK_GUARD].stream_of_recording(recording_id)
    return await _signed(request, stream_id) if stream_id is not None else None


async def _owner_elsewhere(request: web.Request) -> Owner | None:
    stream_id = request.match_info["id"]
    return await owner_elsewhere(request, stream_id) if _ID.fullmatch(stream_id) else None


async def recording_playlist(request: web.Request) -> web.StreamResponse:
    """``GET /recordings/{recordingId}/index.m3u8``: one recording's playlist (on another
    node's disk: that node's answer)."""
    recording_id = request.match_info["recordingId"]
    token = await _signed_recording(request, recording_id)
    try:
        body = await _read_recording_playlist(request.app, recording_id)
    except NotFound as missing:
        path = f"/recordings/{recording_id}/{PLAYLIST_NAME}"
        return await _from_writer(request, recording_id, path, missing)
    return _playlist_response(request, body, token)


async def recording_segment(request: web.Request) -> web.StreamResponse:
    """``GET /recordings/{recordingId}/{segment}``: one recorded segment (in object storage:
    a redirect to a presigned URL of it; on another node's disk: that node's answer)."""
    recording_id, name = request.match_info["recordingId"], request.match_info["segment"]
    token = await _signed_recording(request, recording_id)  # before any presigned redirect
    objects = object_storage(request.app)
    if objects is not None and _ID.fullmatch(recording_id) and _SEGMENT_NAME.fullmatch(name):
        raise await segment_redirect(request, objects, recording_id, name)
    try:
        return await _segment(request, request.app[SETTINGS].recordings_dir, recording_id, token)
    except NotFound as missing:
        path = f"/recordings/{recording_id}/{name}"
        return await _from_writer(request, recording_id, path, missing)


async def _from_writer(
    request: web.Request, recording_id: str, path: str, missing: NotFound
) -> web.StreamResponse:
    """The answer of the node that wrote recording ``recording_id`` on its disk to ``path``
    (a whitelisted name of it), when another node did; else ``missing`` is raised. That node
    down is a 503 naming it."""
    name = path.rsplit("/", 1)[-1]
    if name != PLAYLIST_NAME and not _SEGMENT_NAME.fullmatch(name):
        raise missing
    return await forward_to_writer(request, recording_id, path, missing)


async def forward_to_writer(
    request: web.Request,
    recording_id: str,
    path: str,
    missing: NotFound,
    *,
    query: tuple[str, ...] = (),
) -> web.StreamResponse:
    """The answer to ``path`` of the node that wrote recording ``recording_id`` on its local
    disk, when another node of the cluster did (``query``: the query parameters passed on);
    else ``missing`` is raised. That node down is a 503 naming it, unreachable a 502."""
    if object_storage(request.app) is not None or not clustered(request):
        raise missing
    if not _ID.fullmatch(recording_id):
        raise missing
    writer = await request.app[FORWARDER].writer_elsewhere(recording_id)
    if writer is None:
        raise missing
    if not writer.up:
        raise ApiError(
            503,
            f"the recording is on the disk of node {writer.node.node_id}, which is not running; "
            "it can be played again once that node is back (store recordings in object "
            "storage, LIVERELAY_STORAGE_URL, to play them from any node)",
            code="recording_node_unavailable",
        )
    forwarder = request.app[FORWARDER]
    return await forwarder.forward(request, writer.node, path, recording=True, query=query)


async def latest_recording_playlist(request: web.Request) -> web.StreamResponse:
    """``GET /live/{id}/storage/index.m3u8``: the playlist of the stream's latest recording."""
    stream_id = request.match_info["id"]
    if not _ID.fullmatch(stream_id):
        raise NotFound("stream not found")
    token = await _signed(request, stream_id)
    async with request.app[DB_SESSIONMAKER]() as session:
        recording = await queries.latest_recording(session, stream_id)
    if recording is None:
        raise NotFound("the stream has no recording")
    settings = request.app[SETTINGS]
    try:
        body = await _read_recording_playlist(request.app, recording.id)
    except NotFound as missing:
        path = f"/live/{stream_id}/storage/{PLAYLIST_NAME}"
        return await _from_writer(request, recording.id, path, missing)
    base = f"{settings.http_base_url()}/recordings/{recording.id}/"
    return _playlist_response(request, point_segments_at(body, base), token)


_MAP_PREFIX = '#EXT-X-MAP:URI="'


def point_segments_at(playlist: bytes, base: str) -> bytes:
    """``playlist`` with every relative URI prefixed by ``base``: the URI lines (RFC 8216 4.1:
    lines that are not blank and do not start with ``#``) and the ``EXT-X-MAP`` URIs (fMP4
    initialization segments, as recordings write them)."""

    def rewrite(line: str) -> str:
        if line.startswith(_MAP_PREFIX) and "://" not in line:
            return f"{_MAP_PREFIX}{base}{line[len(_MAP_PREFIX) :]}"
        if line and not line.startswith("#") and "://" not in line:
            return f"{base}{line}"
        return line

    rewritten = [rewrite(line) for line in playlist.decode("utf-8").splitlines()]
    return ("\n".join(rewritten) + "\n").encode("utf-8")


async def _read_recording_playlist(app: web.Application, recording_id: str) -> bytes:
    objects = object_storage(app)
    if objects is not None and _ID.fullmatch(recording_id):
        return await stored_playlist(objects, recording_id)
    return await _read_playlist(app[SETTINGS].recordings_dir, recording_id)


async def _read_playlist(root: Path, directory_id: str, name: str = PLAYLIST_NAME) -> bytes:
    path = await _find(root, directory_id, name)
    try:
        # Read whole: playlists are replaced (renamed over) while we serve them.
        return await asyncio.to_thread(path.read_bytes)
    except OSError:
        raise NotFound("playlist not found") from None


def _playlist_response(request: web.Request, body: bytes, token: str | None) -> web.Response:
    if token is not None:
        body = with_token(body, token)
    return web.Response(body=body, headers=_headers(request, PLAYLIST_NAME, PLAYLIST_CACHE_CONTROL))


async def _segment(
    request: web.Request, root: Path, directory_id: str, token: str | None
) -> web.FileResponse:
    name = request.match_info["segment"]
    if not _SEGMENT_NAME.fullmatch(name):
        raise NotFound("segment not found")
    path = await _find(root, directory_id, name)
    cache = SIGNED_MEDIA_CACHE_CONTROL if token else SEGMENT_CACHE_CONTROL
    return web.FileResponse(path, headers=_headers(request, name, cache))


async def _find(root: Path, directory_id: str, name: str) -> Path:
    if not _ID.fullmatch(directory_id):
        raise NotFound("stream not found")
    path = await asyncio.to_thread(_resolve_inside, root, directory_id, name)
    if path is None:
        playlist = name.endswith(".m3u8")
        raise NotFound("playlist not found" if playlist else "segment not found")
    return path


def _resolve_inside(root: Path, directory_id: str, name: str) -> Path | None:
    """``root/directory_id/name`` with symlinks resolved, if it is a regular file directly in
    ``root/directory_id`` (itself not a symlink)."""
    directory = root.resolve() / directory_id
    path = (directory / name).resolve()
    if path.parent != directory or not path.is_file():
        return None
    return path


def _headers(request: web.Request, name: str, cache_control: str) -> dict[str, str]:
    return {
        "Content-Type": _CONTENT_TYPES[Path(name).suffix],
        "Cache-Control": cache_control,
        "Access-Control-Allow-Origin": request.app[SETTINGS].cors_allow_origin,
    }
