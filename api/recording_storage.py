"""The app's recording storage, and playback of recordings kept in object storage.

:func:`storage_context` opens the storage the settings choose (``LIVERELAY_STORAGE_URL``) before
the media context and closes it after it, so the recordings that shutdown closes can still be
uploaded (within :data:`workers.recording_storages.DRAIN_SECONDS`).

With object storage, playlists are read from the bucket and served by the app (so that
``/live/{id}/storage/index.m3u8`` can point its segment URIs at ``/recordings/{recordingId}/``),
and segments are answered with a ``302`` redirect to a presigned GET URL: the bytes go straight
from object storage to the player, and the bucket stays private.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiohttp import web

from api.errors import ApiError, NotFound
from api.keys import METRICS, RECORDING_STORAGE, SETTINGS
from workers.recording_storages import recording_storage
from workers.storage import LocalRecordingStorage, StorageUnavailable

if TYPE_CHECKING:  # loaded only where recordings go to object storage
    from workers.object_storage import S3RecordingStorage

log = logging.getLogger(__name__)

PRESIGNED_SECONDS = 600
"""Lifetime of the presigned URL a segment request is redirected to."""
REDIRECT_CACHE_CONTROL = "private, max-age=60"
"""The redirect may be reused briefly, never past its URL's lifetime."""


async def storage_context(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: open the recording storage, and close it once everything else ended."""
    async with recording_storage(app[SETTINGS]) as storage:
        app[RECORDING_STORAGE] = storage
        if not isinstance(storage, LocalRecordingStorage):
            app[METRICS].watch_uploads(storage)
        yield


def object_storage(app: web.Application) -> S3RecordingStorage | None:
    """The app's storage when it is object storage, else ``None`` (local disk)."""
    storage = app.get(RECORDING_STORAGE)
    return None if storage is None or isinstance(storage, LocalRecordingStorage) else storage


async def stored_playlist(storage: S3RecordingStorage, recording_id: str) -> bytes:
    """The playlist of a recording in object storage (404 when there is none)."""
    try:
        body = await storage.read_playlist(recording_id)
    except StorageUnavailable as exc:
        log.warning("recording %s: playlist not read: %s", recording_id, exc)
        raise ApiError(
            503,
            "recording storage unavailable, try again",
            code="service_unavailable",
            headers={"Retry-After": "5"},
        ) from None
    if body is None:
        raise NotFound("playlist not found")
    return body


async def segment_redirect(
    request: web.Request, storage: S3RecordingStorage, recording_id: str, name: str
) -> web.HTTPFound:
    """A redirect to a presigned URL of one segment (signed locally: no request is made, so
    a missing segment is the object store's 404)."""
    url = await storage.presigned_url(recording_id, name, PRESIGNED_SECONDS)
    return web.HTTPFound(
        url,
        headers={
            "Cache-Control": REDIRECT_CACHE_CONTROL,
            "Access-Control-Allow-Origin": request.app[SETTINGS].cors_allow_origin,
        },
    )
