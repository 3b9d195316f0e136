"""Queries of live sessions (the rows the media side writes while a stream is live)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.models import LiveSession


async def list_live_sessions(
    session: AsyncSession, stream_id: str, offset: int, limit: int
) -> tuple[Sequence[LiveSession], int]:
    """One page of the live sessions of ``stream_id``, newest first, and the total count."""
    where = LiveSession.live_stream_id == stream_id
    total = (
        await session.execute(select(func.count()).select_from(LiveSession).where(where))
    ).scalar_one()
    query = (
        select(LiveSession)
        .where(where)
        .order_by(LiveSession.started_at.desc(), LiveSession.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return (await session.execute(query)).scalars().all(), total
