"""HLS playback (no auth): live playlists/segments and recordings, addressed by stream id.

Only ``index.m3u8`` and segment names matching a strict whitelist are served, from
``<live_dir>/<id>/`` or ``<recordings_dir>/<id>/``; everything else is a JSON 404. Paths are
resolved and must still be inside the stream's directory, so neither ``..`` (in any encoding)
nor a symlink can lead out of it. Nothing here redirects.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from aiohttp import web

from api.errors import NotFound
from api.keys import SETTINGS

PLAYLIST_NAME = "index.m3u8"
_STREAM_ID = re.compile(r"[0-9a-f]{24}")
_SEGMENT_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}\.(ts|m4s|mp4|aac)")
_CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".aac": "audio/aac",
}
PLAYLIST_CACHE_CONTROL = "no-cache"
SEGMENT_CACHE_CONTROL = "public, max-age=86400, immutable"


def register(router: web.UrlDispatcher) -> None:
    """Add the playback routes to ``router`` (GET and HEAD)."""
    router.add_get("/live/{id}/index.m3u8", live_playlist)
    router.add_get("/live/{id}/storage/index.m3u8", recording_playlist)
    router.add_get("/live/{id}/storage/{segment}", recording_segment)
    router.add_get("/live/{id}/{segment}", live_segment)


async def live_playlist(request: web.Request) -> web.Response:
    """``GET /live/{id}/index.m3u8``: the live playlist (404 when the stream is not live)."""
    return await _playlist(request, request.app[SETTINGS].live_dir)


async def live_segment(request: web.Request) -> web.FileResponse:
    """``GET /live/{id}/{segment}``: one live segment."""
    return await _segment(request, request.app[SETTINGS].live_dir)


async def recording_playlist(request: web.Request) -> web.Response:
    """``GET /live/{id}/storage/index.m3u8``: the recording's playlist."""
    return await _playlist(request, request.app[SETTINGS].recordings_dir)


async def recording_segment(request: web.Request) -> web.FileResponse:
    """``GET /live/{id}/storage/{segment}``: one recorded segment."""
    return await _segment(request, request.app[SETTINGS].recordings_dir)


async def _playlist(request: web.Request, root: Path) -> web.Response:
    path = await _find(root, request.match_info["id"], PLAYLIST_NAME)
    try:
        # Read whole: ffmpeg replaces playlists while we serve them.
        body = await asyncio.to_thread(path.read_bytes)
    except OSError:
        raise NotFound("playlist not found") from None
    return web.Response(body=body, headers=_headers(request, PLAYLIST_NAME, PLAYLIST_CACHE_CONTROL))


async def _segment(request: web.Request, root: Path) -> web.FileResponse:
    name = request.match_info["segment"]
    if not _SEGMENT_NAME.fullmatch(name):
        raise NotFound("segment not found")
    path = await _find(root, request.match_info["id"], name)
    return web.FileResponse(path, headers=_headers(request, name, SEGMENT_CACHE_CONTROL))


async def _find(root: Path, stream_id: str, name: str) -> Path:
    if not _STREAM_ID.fullmatch(stream_id):
        raise NotFound("stream not found")
    path = await asyncio.to_thread(_resolve_inside, root, stream_id, name)
    if path is None:
        raise NotFound("playlist not found" if name == PLAYLIST_NAME else "segment not found")
    return path


def _resolve_inside(root: Path, stream_id: str, name: str) -> Path | None:
    """``root/stream_id/name`` with symlinks resolved, if it is a regular file directly in
    ``root/stream_id`` (itself not a symlink)."""
    directory = root.resolve() / stream_id
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
