"""The recording storage the settings choose: local disk, or S3-compatible object storage."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, TypeAlias

from config import Settings
from workers.storage import LocalRecordingStorage

if TYPE_CHECKING:  # the S3 client (about 13 MB) is loaded only by nodes that use it
    from workers.object_storage import S3RecordingStorage

AnyRecordingStorage: TypeAlias = "LocalRecordingStorage | S3RecordingStorage"
"""Either storage: both also ``withdraw`` recordings and ``empty_trash`` for deletion."""
DRAIN_SECONDS = 5.0
"""How long uploads still waiting at shutdown are given to finish."""


@contextlib.asynccontextmanager
async def recording_storage(settings: Settings) -> AsyncIterator[AnyRecordingStorage]:
    """The storage of ``settings`` (``LIVERELAY_STORAGE_URL``), open for the ``with`` block.
    Object storage is not contacted at start-up (it may be down); missing credentials are an
    error at once."""
    if settings.s3_location is None:
        yield LocalRecordingStorage(settings.recordings_dir)
        return
    from workers.object_storage import S3RecordingStorage
    from workers.s3_options import S3Options

    options = S3Options.from_settings(settings)
    assert options is not None  # s3_location is set
    storage = S3RecordingStorage(options, settings.upload_backlog_dir)
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close(DRAIN_SECONDS)
