"""Queries of signing keys (the public halves of an account's playback-token keys)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.models import SigningKey


async def create_signing_key(session: AsyncSession, account_id: str, public_key: str) -> SigningKey:
    """Store a new key's public half for ``account_id``."""
    key = SigningKey(account_id=account_id, public_key=public_key)
    session.add(key)
    await session.flush()
    return key


async def list_signing_keys(
    session: AsyncSession, account_id: str, *, offset: int, limit: int
) -> tuple[list[SigningKey], int]:
    """One page of the account's keys, newest first, and how many it has."""
    owned = SigningKey.account_id == account_id
    total = await session.scalar(select(func.count()).select_from(SigningKey).where(owned))
    rows = await session.scalars(
        select(SigningKey)
        .where(owned)
        .order_by(SigningKey.created_at.desc(), SigningKey.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return list(rows), int(total or 0)


async def get_signing_key(session: AsyncSession, account_id: str, key_id: str) -> SigningKey | None:
    """The account's key ``key_id`` (``None``: none, or another account's)."""
    return await session.scalar(
        select(SigningKey).where(SigningKey.id == key_id, SigningKey.account_id == account_id)
    )


async def delete_signing_key(session: AsyncSession, key: SigningKey) -> None:
    """Remove ``key``: tokens signed with it are refused from now on."""
    await session.delete(key)
    await session.flush()
