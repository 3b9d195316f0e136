"""Fixtures and helpers of the API tests: accounts with tokens, stream creation, formats."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import selectinload

from api import database, queries
from api.auth import issue_token
from api.keys import DB_SESSIONMAKER, PATHS
from api.models import LiveStream
from config import Settings
from ingest.live import EndReason
from workers.live_path import LivePath

HEX24 = re.compile(r"^[0-9a-f]{24}$")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TARGET = {"url": "rtmp://x.rtmp.youtube.com/live2", "streamKey": "0tjp-h6a2-8c9d-vusv-01uu"}


@dataclass(frozen=True)
class AccountCredentials:
    """An account created for one test, with a valid token."""

    id: str
    name: str
    apikey: str
    secret: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """``Authorization`` with the raw token, as the seed's clients send it."""
        return {"Authorization": self.token}


MakeAccount = Callable[..., Awaitable[AccountCredentials]]


async def new_account(client: TestClient, name: str = "Demo user 01") -> AccountCredentials:
    """Create an account directly in the database of ``client``'s app."""
    async with client.app[DB_SESSIONMAKER]() as session, session.begin():
        account = await queries.create_account(session, name)
    token = issue_token(account.apikey, account.secret, 3600)
    return AccountCredentials(account.id, name, account.apikey, account.secret, token)


@pytest.fixture
def make_account(api_client: TestClient) -> MakeAccount:
    """Create accounts in the database of ``api_client``'s app."""

    async def make(name: str = "Demo user 01") -> AccountCredentials:
        return await new_account(api_client, name)

    return make


@pytest.fixture
async def account(make_account: MakeAccount) -> AccountCredentials:
    """One account of the test."""
    return await make_account()


async def create_stream(
    client: TestClient, account: AccountCredentials, **body: Any
) -> dict[str, Any]:
    """``POST /v1/livestreams`` with ``body`` (name defaults to "zujo"), asserting 201."""
    response = await client.post(
        "/v1/livestreams", json={"name": "zujo", **body}, headers=account.headers
    )
    assert response.status == 201, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def assert_error(
    response: Any, status: int, code: str, fields: list[str] | None = None
) -> dict[str, Any]:
    """Assert the standard JSON error shape; ``fields`` are the expected ``details`` paths."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body: dict[str, Any] = await response.json()
    assert set(body) == {"status", "code", "message", "details", "requestId"}
    assert body["status"] == status
    assert body["code"] == code
    assert body["message"]
    assert body["requestId"] == response.headers["X-Request-Id"]
    if fields is not None:
        assert [d["field"] for d in body["details"]] == fields
    return body


@dataclass
class LivePublisher:
    """A publisher admitted to a stream's live path without RTMP (see :func:`go_live`); it
    records the reasons the path disconnected it for."""

    client_address: str
    path: LivePath = field(init=False)
    """The live path it was admitted to."""
    ended: list[str] = field(default_factory=list)
    """Why the publisher was disconnected, in order."""

    def disconnect(self, reason: EndReason) -> None:
        """The path let this publisher go."""
        self.ended.append(reason)

    @property
    def stream_id(self) -> str:
        return self.path.stream_id


async def go_live(
    client: TestClient, stream_id: str, client_address: str = "203.0.113.7:50000"
) -> LivePublisher:
    """Admit a publisher to ``stream_id``'s live path the way a publish does, with the stream's
    key through the app's admission (its outputs wait for media that never comes)."""
    app = client.app
    async with app[DB_SESSIONMAKER]() as session:
        row = await session.get(LiveStream, stream_id, options=[selectinload(LiveStream.targets)])
    assert row is not None
    publisher = LivePublisher(client_address)
    publisher.path = await app[PATHS].admit(row.stream_key, publisher)
    assert publisher.path.stream_id == stream_id
    return publisher


@contextlib.asynccontextmanager
async def one_connection_engine(
    settings: Settings, *, pool_timeout: float
) -> AsyncIterator[AsyncEngine]:
    """An engine on the test database with a single pooled connection whose wait for it gives
    up after ``pool_timeout`` seconds (to make a busy pool)."""
    engine = create_async_engine(
        database.database_url(settings), pool_size=1, max_overflow=0, pool_timeout=pool_timeout
    )
    try:
        yield engine
    finally:
        await engine.dispose()


class PoolWaits:
    """Sessions on an engine, counting the tries that ran out of the pool's wait."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        waits = self

        class CountingSession(AsyncSession):
            async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
                if isinstance(value, PoolTimeout):
                    waits.count += 1
                await super().__aexit__(type_, value, traceback)

        self.sessionmaker = async_sessionmaker(engine, class_=CountingSession)


@contextlib.asynccontextmanager
async def holding_its_connection(engine: AsyncEngine) -> AsyncIterator[None]:
    """Keep ``engine``'s only connection busy until the block ends."""
    async with engine.connect() as held:
        await held.execute(text("SELECT 1"))
        yield
