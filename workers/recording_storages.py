"""The recording storage the settings choose: local disk, or S3-compatible object storage."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from config import Settings
from workers.object_storage import S3RecordingStorage
from workers.s3_options import S3Options
from workers.storage import LocalRecordingStorage

AnyRecordingStorage = LocalRecordingStorage | S3RecordingStorage
"""Either storage: both also ``withdraw`` recordings and ``empty_trash`` for deletion."""
DRAIN_SECONDS = 5.0
"""How long uploads still waiting at shutdown are given to finish."""


@contextlib.asynccontextmanager
async def recording_storage(settings: Settings) -> AsyncIterator[AnyRecordingStorage]:
    """The storage of ``settings`` (``LIVERELAY_STORAGE_URL``), open for the ``with`` block.
    Object storage is not contacted at start-up (it may be down); missing credentials are an
    error at once."""
    options = S3Options.from_settings(settings)
    if options is None:
        yield LocalRecordingStorage(settings.recordings_dir)
        return
    storage = S3RecordingStorage(options, settings.upload_backlog_dir)
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close(DRAIN_SECONDS)
