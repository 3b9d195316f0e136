"""Queries of accounts: create, look up, rotate the secret, delete with their streams."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.models import Account, LiveStream, new_object_id, utc_now
from api.queries.live_streams import active_streams_of
from api.queries.recordings import mark_recordings_deleted


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
    """Mark the account of ``apikey`` deleted, with every stream of it (as
    :func:`api.queries.live_streams.delete_live_stream` does); returns whether one was active."""
    account = await get_active_account(session, apikey)
    if account is None:
        return False
    now = utc_now()
    account.deleted_at = now
    streams = select(LiveStream.id).where(*active_streams_of(account.id))
    await mark_recordings_deleted(session, streams)
    await session.execute(
        update(LiveStream)
        .where(*active_streams_of(account.id))
        .values(deleted_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    return True


async def rotate_secret(session: AsyncSession, apikey: str) -> Account | None:
    """Give the active account of ``apikey`` a fresh 256-bit secret (tokens signed with the old
    one are refused from now on); ``None`` when there is no such account."""
    account = await get_active_account(session, apikey)
    if account is None:
        return None
    account.secret = secrets.token_hex(32)
    await session.flush()
    return account
