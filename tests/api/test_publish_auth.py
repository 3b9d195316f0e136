"""The database-backed PublishAuthorizer the ingest asks before accepting a publish."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import async_sessionmaker

from api import queries
from api.keys import AUTHORIZER, DB_SESSIONMAKER
from api.live.publish_auth import DatabasePublishAuthorizer
from api.pool_wait import PoolTimeout
from config import Settings
from ingest.authorizer import PublishDenied, PublishGrant, RestreamTarget
from tests.api.conftest import (
    AccountCredentials,
    PoolWaits,
    create_stream,
    holding_its_connection,
    one_connection_engine,
)
from tests.polling import eventually


async def test_valid_key_gets_a_grant(
    api_client: TestClient, account: AccountCredentials, caplog: pytest.LogCaptureFixture
) -> None:
    targets = [
        {"url": "rtmp://a.example.com/live2", "streamKey": "key-a"},
        {"url": "rtmps://b.example.com:443/app/", "streamKey": "key-b"},
    ]
    stream = await create_stream(api_client, account, record=True, restream=targets)
    caplog.set_level(logging.DEBUG, logger="api")
    grant = await api_client.app[AUTHORIZER].authorize_publish(
        stream["streamKey"], "127.0.0.1:50000"
    )
    assert grant == PublishGrant(
        stream_id=stream["id"],
        record=True,
        restream=(
            RestreamTarget(
                stream["restream"][0]["_id"], "rtmp://a.example.com/live2/key-a", "key-a"
            ),
            RestreamTarget(
                stream["restream"][1]["_id"], "rtmps://b.example.com:443/app/key-b", "key-b"
            ),
        ),
        latency_mode="low",  # the default of a new stream
    )
    assert stream["streamKey"] not in caplog.text
    assert stream["id"] in caplog.text


async def test_grant_follows_updates(api_client: TestClient, account: AccountCredentials) -> None:
    stream = await create_stream(api_client, account)
    authorizer = api_client.app[AUTHORIZER]
    assert (await authorizer.authorize_publish(stream["streamKey"], "c")).record is False
    await api_client.patch(
        f"/v1/livestreams/{stream['id']}", json={"record": True}, headers=account.headers
    )
    grant = await authorizer.authorize_publish(stream["streamKey"], "c")
    assert grant.record is True and grant.restream == ()


@pytest.mark.parametrize(
    "key", ["", "no-such-key", "e83fb175-5606-4ee5-b960-aacfce300ba6", "x" * 10_000]
)
async def test_unknown_key_is_denied(
    api_client: TestClient, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="api")
    with pytest.raises(PublishDenied, match="unknown stream key"):
        await api_client.app[AUTHORIZER].authorize_publish(key, "192.0.2.1:1234")
    if key:
        assert key not in caplog.text


async def test_deleted_stream_key_is_denied(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account)
    await api_client.delete(f"/v1/livestreams/{stream['id']}", headers=account.headers)
    with pytest.raises(PublishDenied):
        await api_client.app[AUTHORIZER].authorize_publish(stream["streamKey"], "c")


async def test_deleted_account_keys_are_denied(
    api_client: TestClient, account: AccountCredentials
) -> None:
    stream = await create_stream(api_client, account)
    async with api_client.app[DB_SESSIONMAKER]() as session, session.begin():
        await queries.delete_account(session, account.apikey)
    with pytest.raises(PublishDenied):
        await api_client.app[AUTHORIZER].authorize_publish(stream["streamKey"], "c")


async def test_a_busy_pool_delays_a_publish_rather_than_refusing_it(
    api_client: TestClient, account: AccountCredentials, app_settings: Settings
) -> None:
    # One pooled connection, held by someone else for longer than the pool's own wait: the
    # key check keeps waiting (within its patience) and is granted once the connection is free.
    stream = await create_stream(api_client, account)
    async with one_connection_engine(app_settings, pool_timeout=0.2) as engine:
        waits = PoolWaits(engine)
        authorizer = DatabasePublishAuthorizer(waits.sessionmaker, busy_patience=10.0)
        async with holding_its_connection(engine):
            check = asyncio.create_task(
                authorizer.authorize_publish(stream["streamKey"], "127.0.0.1:50000")
            )
            await eventually(lambda: waits.count >= 3)  # three pool waits have run out
            assert not check.done()
        grant = await asyncio.wait_for(check, 10)
    assert grant.stream_id == stream["id"]


async def test_past_its_patience_a_publish_on_a_busy_pool_fails(
    api_client: TestClient, account: AccountCredentials, app_settings: Settings
) -> None:
    stream = await create_stream(api_client, account)
    async with one_connection_engine(app_settings, pool_timeout=0.1) as engine:
        authorizer = DatabasePublishAuthorizer(async_sessionmaker(engine), busy_patience=0.3)
        async with holding_its_connection(engine):
            with pytest.raises(PoolTimeout):
                await authorizer.authorize_publish(stream["streamKey"], "127.0.0.1:50000")
