"""The database-backed :class:`workers.recording.RecordingStore`.

A finished recording queues ``recording.ready`` or ``recording.failed`` in the transaction that
stores its final state (when the store has a :class:`~api.live.stream_view.StreamView` to render the
event with).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api import queries
from api.live.stream_view import StreamView
from api.models import LiveSession, LiveStream, Recording
from api.webhooks.outbox import enqueue
from workers.recording import RecordingStatus, RecordingSummary

log = logging.getLogger(__name__)


class DatabaseRecordingStore:
    """Creates and finishes the ``recordings`` rows of live paths, one transaction each."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        view: StreamView | None = None,
        *,
        data_id: str | None = None,
    ) -> None:
        """Without ``view`` no ``recording.*`` events are queued; ``data_id`` (of this node's
        data directory) is written on each row, so other nodes know which node has its
        files."""
        self._sessionmaker = sessionmaker
        self._view = view
        self._data_id = data_id

    async def recording_started(
        self,
        stream_id: str,
        started_at: float,
        *,
        session_id: str | None = None,
        generation: int | None = None,
    ) -> str:
        """Insert a ``recording`` row written under ownership ``generation``, name it as the
        recording of session ``session_id`` (when its row exists); return its id."""
        async with self._sessionmaker() as session, session.begin():
            recording = await queries.create_recording(
                session, stream_id, _datetime(started_at), self._data_id
            )
            recording.lease_generation = generation
            if session_id is not None:
                await session.execute(
                    update(LiveSession)
                    .where(LiveSession.id == session_id, LiveSession.recording_id.is_(None))
                    .values(recording_id=recording.id)
                )
        return recording.id

    async def recording_finished(self, summary: RecordingSummary) -> None:
        """Store the final status, end time and size of a recording (if it still exists and
        no later ownership took it over: a stale owner's final state is refused)."""
        async with self._sessionmaker() as session, session.begin():
            recording = await queries.get_recording_by_id(session, summary.recording_id)
            if recording is None:
                return  # deleted meanwhile
            current, writer = recording.lease_generation, summary.lease_generation
            if current is not None and writer is not None and writer < current:
                log.warning(
                    "recording %s: final state %s from ownership generation %d refused: "
                    "generation %d continues it",
                    recording.id,
                    summary.status,
                    writer,
                    current,
                )
                return
            if recording.status in ("ready", "failed"):
                log.warning(
                    "recording %s: final state %s refused: it is %s already",
                    recording.id,
                    summary.status,
                    recording.status,
                )
                return
            if writer is not None:  # whoever closes it is its newest owner
                recording.lease_generation = max(writer, current or 0)
            if await _of_deleted_stream(session, recording):
                recording.status = queries.DELETED  # left to api.jobs.deletion to remove
                return
            recording.status = summary.status
            recording.ended_at = _datetime(summary.ended_at) if summary.ended_at else None
            recording.duration = summary.duration
            recording.bytes = summary.bytes
            recording.segments = summary.segments
            recording.error = summary.error[:512] if summary.error else None
            await session.flush()
            await self._queue_finished(session, recording)

    async def _queue_finished(self, session: AsyncSession, recording: Recording) -> None:
        if self._view is None or recording.status not in ("ready", "failed"):
            return
        loaded = await self._view.load(session, recording.live_stream_id)
        if loaded is None:
            return
        stream, account = loaded
        data = self._view.recording_event(stream, account, recording)
        event_type = "recording.ready" if recording.status == "ready" else "recording.failed"
        await enqueue(
            session,
            account_id=account.id,
            event_type=event_type,
            data=data,
            stream_id=stream.id,
        )

    async def unfinished_recordings(self) -> Sequence[RecordingSummary]:
        """Rows still in state ``recording``."""
        async with self._sessionmaker() as session:
            rows = await queries.unfinished_recordings(session)
        return [summary_of(row) for row in rows]


async def _of_deleted_stream(session: AsyncSession, recording: Recording) -> bool:
    """Whether ``recording`` is marked deleted or its stream was deleted (also while it was
    being recorded, or just before its row was made)."""
    if recording.status == queries.DELETED:
        return True
    stream = await session.get(LiveStream, recording.live_stream_id)
    return stream is None or stream.deleted_at is not None


def summary_of(recording: Recording) -> RecordingSummary:
    """A row as the workers see it."""
    status: RecordingStatus = "failed"
    if recording.status in ("recording", "ready"):
        status = "ready" if recording.status == "ready" else "recording"
    return RecordingSummary(
        recording_id=recording.id,
        stream_id=recording.live_stream_id,
        status=status,
        started_at=recording.started_at.timestamp(),
        ended_at=recording.ended_at.timestamp() if recording.ended_at else None,
        duration=recording.duration,
        bytes=recording.bytes,
        segments=recording.segments,
        error=recording.error,
        lease_generation=recording.lease_generation,
    )


def _datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
