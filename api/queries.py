"""Plain query functions over an :class:`AsyncSession`; the caller owns the transaction.

Every function that returns a :class:`LiveStream` has loaded its ``targets``.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from api.models import (
    Account,
    LiveStream,
    Recording,
    RestreamTarget,
    new_object_id,
    utc_now,
)


class TargetSpec(NamedTuple):
    """A restream target as requested: ``url`` and its ``stream_key``."""

    url: str
    stream_key: str


# --- accounts ---------------------------------------------------------------------------------


async def create_account(session: AsyncSession, name: str) -> Account:
    """Create an account with a fresh API key (UUID4) and a 256-bit secret."""
    account = Account(
        id=new_object_id(),
        name=name,
        apikey=str(uuid.uuid4()),
        secret=secrets.token_hex(32),
        created_at=utc_now(),
    )
    session.add(account)
    await session.flush()
    return account


async def get_active_account(session: AsyncSession, apikey: str) -> Account | None:
    """The account holding ``apikey``, unless it was deleted."""
    query = select(Account).where(Account.apikey == apikey, Account.deleted_at.is_(None))
    return (await session.execute(query)).scalar_one_or_none()


async def list_active_accounts(session: AsyncSession) -> Sequence[Account]:
    """All accounts not deleted, oldest first."""
    query = select(Account).where(Account.deleted_at.is_(None)).order_by(Account.created_at)
    return (await session.execute(query)).scalars().all()


async def delete_account(session: AsyncSession, apikey: str) -> bool:
    """Mark the account of ``apikey`` deleted; returns whether one was active."""
    account = await get_active_account(session, apikey)
    if account is None:
        return False
    account.deleted_at = utc_now()
    await session.flush()
    return True


# --- live streams -----------------------------------------------------------------------------


def _active_streams_of(account_id: str) -> list[ColumnElement[bool]]:
    return [LiveStream.account_id == account_id, LiveStream.deleted_at.is_(None)]


async def create_live_stream(
    session: AsyncSession, account_id: str, name: str, record: bool, targets: Sequence[TargetSpec]
) -> LiveStream:
    """Create a live stream with a fresh UUID4 stream key."""
    now = utc_now()
    stream = LiveStream(
        id=new_object_id(),
        account_id=account_id,
        name=name,
        record=record,
        stream_key=str(uuid.uuid4()),
        created_at=now,
        updated_at=now,
        targets=[],
    )
    _replace_targets(stream, targets)
    session.add(stream)
    await session.flush()
    return stream


async def get_live_stream(
    session: AsyncSession, account_id: str, stream_id: str
) -> LiveStream | None:
    """The account's live stream ``stream_id``, unless deleted (other accounts' -> ``None``)."""
    query = (
        select(LiveStream)
        .where(LiveStream.id == stream_id, *_active_streams_of(account_id))
        .options(selectinload(LiveStream.targets))
    )
    return (await session.execute(query)).scalar_one_or_none()


async def list_live_streams(
    session: AsyncSession, account_id: str, offset: int, limit: int
) -> tuple[Sequence[LiveStream], int]:
    """One page of the account's live streams, newest first, and the total count."""
    where = _active_streams_of(account_id)
    total = (
        await session.execute(select(func.count()).select_from(LiveStream).where(*where))
    ).scalar_one()
    query = (
        select(LiveStream)
        .where(*where)
        .order_by(LiveStream.created_at.desc(), LiveStream.id.desc())
        .offset(offset)
        .limit(limit)
        .options(selectinload(LiveStream.targets))
    )
    return (await session.execute(query)).scalars().all(), total


async def update_live_stream(
    session: AsyncSession,
    stream: LiveStream,
    *,
    name: str | None = None,
    record: bool | None = None,
    targets: Sequence[TargetSpec] | None = None,
) -> LiveStream:
    """Change the given fields; ``targets`` replaces the list (unchanged targets keep ids)."""
    if name is not None:
        stream.name = name
    if record is not None:
        stream.record = record
    if targets is not None:
        _replace_targets(stream, targets)
    stream.updated_at = utc_now()
    await session.flush()
    return stream


async def delete_live_stream(session: AsyncSession, stream: LiveStream) -> LiveStream:
    """Soft-delete ``stream``: it disappears from the API and its key can no longer publish."""
    stream.deleted_at = utc_now()
    await session.flush()
    return stream


async def find_publishable_stream(session: AsyncSession, stream_key: str) -> LiveStream | None:
    """The live stream ``stream_key`` may publish to: not deleted, owned by an active account."""
    query = (
        select(LiveStream)
        .join(Account, Account.id == LiveStream.account_id)
        .where(
            LiveStream.stream_key == stream_key,
            LiveStream.deleted_at.is_(None),
            Account.deleted_at.is_(None),
        )
        .options(selectinload(LiveStream.targets))
    )
    return (await session.execute(query)).scalar_one_or_none()


def _replace_targets(stream: LiveStream, specs: Sequence[TargetSpec]) -> None:
    """Set the target list to ``specs``, reusing (and keeping the id of) identical targets."""
    reusable = list(stream.targets)
    targets: list[RestreamTarget] = []
    for position, spec in enumerate(specs):
        target = next(
            (t for t in reusable if (t.url, t.stream_key) == (spec.url, spec.stream_key)), None
        )
        if target is None:
            target = RestreamTarget(id=new_object_id(), url=spec.url, stream_key=spec.stream_key)
        else:
            reusable.remove(target)
        target.position = position
        targets.append(target)
    stream.targets = targets


# --- recordings -------------------------------------------------------------------------------


async def create_recording(
    session: AsyncSession, stream_id: str, started_at: datetime
) -> Recording:
    """A new recording of ``stream_id``, in state ``recording``."""
    recording = Recording(
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
