"""Queries of recordings."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.models import LiveStream, Recording, new_object_id

DELETED = "deleted"
"""Status of a recording whose stream was deleted: never listed or served again; its files and
its row are being removed."""


async def mark_recordings_deleted(session: AsyncSession, stream_ids: Any) -> None:
    """Mark every recording of ``stream_ids`` (a list or a subquery) ``deleted``."""
    await session.execute(
        update(Recording)
        .where(Recording.live_stream_id.in_(stream_ids))
        .values(status=DELETED)
        .execution_options(synchronize_session=False)
    )


async def create_recording(
    session: AsyncSession, stream_id: str, started_at: datetime, data_id: str | None = None
) -> Recording:
    """A new recording of ``stream_id``, in state ``recording``, written into the data
    directory ``data_id``."""
    recording = Recording(
        data_id=data_id,
        id=new_object_id(),
        live_stream_id=stream_id,
        status="recording",
        started_at=started_at,
        duration=0.0,
        bytes=0,
        segments=0,
    )
    session.add(recording)
    await session.flush()
    return recording


async def get_recording_by_id(session: AsyncSession, recording_id: str) -> Recording | None:
    """The recording ``recording_id`` (whatever its stream's state)."""
    return await session.get(Recording, recording_id)


async def unfinished_recordings(session: AsyncSession) -> Sequence[Recording]:
    """Recordings still in state ``recording``, oldest first."""
    query = select(Recording).where(Recording.status == "recording").order_by(Recording.started_at)
    return (await session.execute(query)).scalars().all()


async def list_recordings(session: AsyncSession, stream_id: str) -> Sequence[Recording]:
    """Every recording of ``stream_id``, newest first."""
    query = (
        select(Recording)
        .where(Recording.live_stream_id == stream_id)
        .order_by(Recording.started_at.desc(), Recording.id.desc())
    )
    return (await session.execute(query)).scalars().all()


async def get_recording(
    session: AsyncSession, stream_id: str, recording_id: str
) -> Recording | None:
    """Recording ``recording_id`` if it belongs to ``stream_id``."""
    query = select(Recording).where(
        Recording.id == recording_id, Recording.live_stream_id == stream_id
    )
    return (await session.execute(query)).scalar_one_or_none()


async def latest_recording(session: AsyncSession, stream_id: str) -> Recording | None:
    """The newest recording of ``stream_id`` that has media or is still growing, if the stream
    is not deleted."""
    query = (
        select(Recording)
        .join(LiveStream, LiveStream.id == Recording.live_stream_id)
        .where(
            Recording.live_stream_id == stream_id,
            Recording.status != "failed",
            LiveStream.deleted_at.is_(None),
        )
        .order_by(Recording.started_at.desc(), Recording.id.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def delete_recording(session: AsyncSession, recording: Recording) -> None:
    """Delete the row of ``recording`` (its files are the caller's to remove)."""
    await session.delete(recording)
    await session.flush()
