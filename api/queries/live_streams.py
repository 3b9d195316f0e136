"""Queries of live streams and their restream targets.

Every function that returns a :class:`LiveStream` has loaded its ``targets``.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Literal, NamedTuple

from sqlalchemy import ColumnElement, false, func, literal_column, not_, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from api.cluster.clock import clock_of
from api.models import (
    DEFAULT_LATENCY_MODE,
    DEFAULT_MAX_DURATION_SECONDS,
    DEFAULT_PLAYBACK_POLICY,
    DEFAULT_RECONNECT_WINDOW_SECONDS,
    DEFAULT_RENDITIONS,
    Account,
    LiveStream,
    RestreamTarget,
    StreamLease,
    new_object_id,
    utc_now,
)
from api.queries.recordings import mark_recordings_deleted


class TargetSpec(NamedTuple):
    """A restream target as requested: ``url`` and its ``stream_key``, and for a list item that
    names an existing target of the stream, that target's id."""

    url: str
    stream_key: str
    target_id: str | None = None


class StreamFilter(NamedTuple):
    """Which of an account's live streams a listing shows."""

    status: Literal["live", "idle", "disabled"] | None = None
    """``disabled``: refusing publishes; ``live``: enabled and in ``live_ids``; ``idle``:
    enabled and not in ``live_ids``; ``None``: all."""
    live_ids: frozenset[str] = frozenset()
    """The streams with a live session (a node-local fact the caller supplies)."""
    name: str | None = None
    """A substring of the name, matched case-insensitively (ASCII letters on SQLite)."""
    ids: frozenset[str] | None = None
    """Only these streams (``None``: any)."""
    live_leases: bool = False
    """With several nodes: streams with a live lease (by the database's clock) are live too,
    on whichever node."""


NO_FILTER = StreamFilter()


def active_streams_of(account_id: str) -> list[ColumnElement[bool]]:
    """The clauses selecting the live streams of ``account_id`` that are not deleted."""
    return [LiveStream.account_id == account_id, LiveStream.deleted_at.is_(None)]


async def create_live_stream(
    session: AsyncSession,
    account_id: str,
    name: str,
    record: bool,
    targets: Sequence[TargetSpec],
    *,
    reconnect_window_seconds: int = DEFAULT_RECONNECT_WINDOW_SECONDS,
    max_duration_seconds: int = DEFAULT_MAX_DURATION_SECONDS,
    latency_mode: str = DEFAULT_LATENCY_MODE,
    playback_policy: str = DEFAULT_PLAYBACK_POLICY,
    renditions: str = DEFAULT_RENDITIONS,
) -> LiveStream:
    """Create an enabled live stream with a fresh UUID4 stream key (``renditions`` in its
    stored form, :func:`workers.renditions.encode_renditions`)."""
    now = utc_now()
    stream = LiveStream(
        id=new_object_id(),
        account_id=account_id,
        name=name,
        record=record,
        stream_key=str(uuid.uuid4()),
        created_at=now,
        updated_at=now,
        disabled=False,
        reconnect_window_seconds=reconnect_window_seconds,
        max_duration_seconds=max_duration_seconds,
        latency_mode=latency_mode,
        playback_policy=playback_policy,
        renditions=renditions,
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
        .where(LiveStream.id == stream_id, *active_streams_of(account_id))
        .options(selectinload(LiveStream.targets))
    )
    return (await session.execute(query)).scalar_one_or_none()


async def streams_by_id(
    session: AsyncSession, stream_ids: Collection[str]
) -> dict[str, LiveStream]:
    """The streams of ``stream_ids`` whatever their account, deleted ones included (a node
    checking what its live streams became)."""
    if not stream_ids:
        return {}
    query = (
        select(LiveStream)
        .where(LiveStream.id.in_(list(stream_ids)))
        .options(selectinload(LiveStream.targets))
    )
    return {stream.id: stream for stream in (await session.execute(query)).scalars()}


async def lock_live_stream(
    session: AsyncSession, account_id: str, stream_id: str
) -> LiveStream | None:
    """Like :func:`get_live_stream`, for a change: concurrent changes to one stream wait for
    each other until the transaction ends. A no-op UPDATE comes first, which takes the row lock
    on PostgreSQL and the write lock on SQLite, so what is read next is the latest state."""
    touch = (
        update(LiveStream)
        .where(LiveStream.id == stream_id, *active_streams_of(account_id))
        .values(updated_at=LiveStream.updated_at)
        .execution_options(synchronize_session=False)
    )
    await session.execute(touch)
    return await get_live_stream(session, account_id, stream_id)


def _filter_clauses(where: StreamFilter, now: str) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    if where.status == "disabled":
        clauses.append(LiveStream.disabled == true())
    elif where.status == "live":
        clauses += [LiveStream.disabled == false(), _live(where, now)]
    elif where.status == "idle":
        clauses += [LiveStream.disabled == false(), not_(_live(where, now))]
    if where.ids is not None:
        clauses.append(LiveStream.id.in_(sorted(where.ids)))
    if where.name:
        needle = where.name.lower()
        clauses.append(func.lower(LiveStream.name).contains(needle, autoescape=True))
    return clauses


def _live(where: StreamFilter, now: str) -> ColumnElement[bool]:
    here = LiveStream.id.in_(where.live_ids)
    if not where.live_leases:
        return here
    leased = select(StreamLease.stream_id).where(StreamLease.expires_at > literal_column(now))
    return or_(here, LiveStream.id.in_(leased))


async def list_live_streams(
    session: AsyncSession,
    account_id: str,
    offset: int,
    limit: int,
    filters: StreamFilter = NO_FILTER,
) -> tuple[Sequence[LiveStream], int]:
    """One page of the account's live streams matching ``filters``, newest first, and the
    total count."""
    where = active_streams_of(account_id) + _filter_clauses(filters, clock_of(session).now)
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
    reconnect_window_seconds: int | None = None,
    max_duration_seconds: int | None = None,
    latency_mode: str | None = None,
    playback_policy: str | None = None,
    renditions: str | None = None,
) -> LiveStream:
    """Change the given fields; ``targets`` replaces the list (unchanged targets keep ids)."""
    if name is not None:
        stream.name = name
    if record is not None:
        stream.record = record
    if targets is not None:
        _replace_targets(stream, targets)
    if reconnect_window_seconds is not None:
        stream.reconnect_window_seconds = reconnect_window_seconds
    if max_duration_seconds is not None:
        stream.max_duration_seconds = max_duration_seconds
    if latency_mode is not None:
        stream.latency_mode = latency_mode
    if playback_policy is not None:
        stream.playback_policy = playback_policy
    if renditions is not None:
        stream.renditions = renditions
    stream.updated_at = utc_now()
    await session.flush()
    return stream


async def delete_live_stream(session: AsyncSession, stream: LiveStream) -> LiveStream:
    """Soft-delete ``stream``: it disappears from the API and its key can no longer publish; its
    recordings become ``deleted`` (their files and rows are removed by :mod:`api.jobs.deletion`)."""
    stream.deleted_at = utc_now()
    await mark_recordings_deleted(session, [stream.id])
    await session.flush()
    return stream


async def reset_stream_key(session: AsyncSession, stream: LiveStream) -> LiveStream:
    """Give ``stream`` a fresh UUID4 stream key; the old one can no longer publish."""
    stream.stream_key = str(uuid.uuid4())
    stream.updated_at = utc_now()
    await session.flush()
    return stream


async def set_disabled(session: AsyncSession, stream: LiveStream, disabled: bool) -> LiveStream:
    """Disable (refuse publishes) or enable ``stream``; a no-op when it already is."""
    if stream.disabled != disabled:
        stream.disabled = disabled
        stream.updated_at = utc_now()
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
    """Set the target list to ``specs``: a spec naming one of the stream's targets is that
    target (it keeps its id, takes the spec's url and key); any other reuses (and keeps the id
    of) an identical target no spec names, or is a new target."""
    by_id = {target.id: target for target in stream.targets}
    named = {spec.target_id for spec in specs if spec.target_id in by_id}
    reusable = [target for target in stream.targets if target.id not in named]
    targets: list[RestreamTarget] = []
    for position, spec in enumerate(specs):
        target = by_id.get(spec.target_id) if spec.target_id is not None else None
        if target is not None:
            target.url, target.stream_key = spec.url, spec.stream_key
        else:
            target = next(
                (t for t in reusable if (t.url, t.stream_key) == (spec.url, spec.stream_key)),
                None,
            )
            if target is None:
                target = RestreamTarget(
                    id=new_object_id(), url=spec.url, stream_key=spec.stream_key
                )
            else:
                reusable.remove(target)
        target.position = position
        targets.append(target)
    stream.targets = targets


async def add_restream_target(
    session: AsyncSession, stream: LiveStream, spec: TargetSpec
) -> RestreamTarget:
    """Append a target to the list of ``stream``."""
    target = RestreamTarget(
        id=new_object_id(), url=spec.url, stream_key=spec.stream_key, position=len(stream.targets)
    )
    stream.targets.append(target)
    stream.updated_at = utc_now()
    await session.flush()
    return target


async def update_restream_target(
    session: AsyncSession,
    stream: LiveStream,
    target: RestreamTarget,
    *,
    url: str | None = None,
    stream_key: str | None = None,
) -> RestreamTarget:
    """Change the given fields of ``target`` (one of ``stream``'s); it keeps its id."""
    if url is not None:
        target.url = url
    if stream_key is not None:
        target.stream_key = stream_key
    stream.updated_at = utc_now()
    await session.flush()
    return target


async def remove_restream_target(
    session: AsyncSession, stream: LiveStream, target: RestreamTarget
) -> None:
    """Delete ``target`` from the list of ``stream``; the others keep their order."""
    stream.targets.remove(target)
    for position, remaining in enumerate(stream.targets):
        remaining.position = position
    stream.updated_at = utc_now()
    await session.flush()
