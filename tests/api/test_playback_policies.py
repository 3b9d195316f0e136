"""The playback policy cache: one query for a stampede, one query for streams played together,
never older than its TTL, a change here applied at once (fake clock, real database)."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient
from sqlalchemy import update

from api.keys import DB_SESSIONMAKER
from api.models import LiveStream
from api.playback_policies import PolicyCache
from tests.api.conftest import AccountCredentials, create_stream


async def _set_policy(client: TestClient, stream_id: str, policy: str) -> None:
    """Change the policy in the database only (as another node would)."""
    async with client.app[DB_SESSIONMAKER]() as session, session.begin():
        await session.execute(
            update(LiveStream).where(LiveStream.id == stream_id).values(playback_policy=policy)
        )


async def test_requests_missing_together_make_one_query(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account, playbackPolicy="signed")
    cache = PolicyCache(api_client.app[DB_SESSIONMAKER], clock=lambda: 0.0)
    policies = await asyncio.gather(*(cache.get(stream["id"]) for _ in range(50)))
    assert cache.lookups == 1
    assert {(p.account_id, p.signed) for p in policies if p is not None} == {(account.id, True)}
    assert None not in policies


async def test_one_query_refreshes_the_streams_about_to_expire(
    api_client: TestClient, account: AccountCredentials
) -> None:
    first, second = [(await create_stream(api_client, account))["id"] for _ in range(2)]
    now = [100.0]
    cache = PolicyCache(api_client.app[DB_SESSIONMAKER], clock=lambda: now[0], ttl=2.0)
    await cache.get(first)  # fresh until 102.0
    now[0] = 100.5
    await cache.get(second)  # fresh until 102.5
    assert cache.lookups == 2
    now[0] = 102.1  # first expired; second expires within half a TTL: refreshed with it
    await cache.get(first)
    assert cache.lookups == 3
    now[0] = 104.0
    await cache.get(second)  # refreshed at 102.1: fresh until 104.1
    assert cache.lookups == 3
    now[0] = 104.2  # both expired together: one query for both from now on
    await cache.get(first)
    await cache.get(second)
    assert cache.lookups == 4


async def test_a_policy_is_never_older_than_its_ttl_and_a_change_here_applies_at_once(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream_id = (await create_stream(api_client, account))["id"]
    now = [100.0]
    cache = PolicyCache(api_client.app[DB_SESSIONMAKER], clock=lambda: now[0], ttl=2.0)
    assert (await cache.get(stream_id)).signed is False  # type: ignore[union-attr]
    await _set_policy(api_client, stream_id, "signed")  # on another node
    now[0] = 101.9
    assert (await cache.get(stream_id)).signed is False  # type: ignore[union-attr]
    now[0] = 102.0
    assert (await cache.get(stream_id)).signed is True  # type: ignore[union-attr]
    await _set_policy(api_client, stream_id, "public")
    cache.forget(stream_id)  # a change on this node
    assert (await cache.get(stream_id)).signed is False  # type: ignore[union-attr]
    assert await cache.get("0" * 24) is None  # no such stream


async def test_a_change_during_a_lookup_is_not_hidden_by_its_answer(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream_id = (await create_stream(api_client, account))["id"]
    cache = PolicyCache(api_client.app[DB_SESSIONMAKER], clock=lambda: 0.0)
    asking = asyncio.create_task(cache.get(stream_id))
    for _ in range(100):  # bounded: until the lookup is under way
        if cache.lookups:
            break
        await asyncio.sleep(0)
    await _set_policy(api_client, stream_id, "signed")
    cache.forget(stream_id)  # the lookup under way may have read the old policy
    await asking
    assert (await cache.get(stream_id)).signed is True  # type: ignore[union-attr]
    assert cache.lookups == 2
