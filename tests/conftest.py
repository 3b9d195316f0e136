"""Shared database and app fixtures.

``database_url`` is parametrized: every test that uses it (directly or through ``app_settings``,
``api_app`` or ``api_client``) runs on SQLite and on PostgreSQL. PostgreSQL must listen on
127.0.0.1:5432 with user ``postgres`` and trust auth; each test session creates its own
``liverelay_t_<hex>`` database and drops it at the end, so concurrent runs never collide. Under
pytest-xdist every worker process is a session of its own: it has its own database, SQLite file
and S3 servers (the session-scoped fixtures below), never another worker's. If PostgreSQL is
unreachable the tests fail (they do not skip).

Databases are shared by the tests of a session; tests isolate themselves by creating their own
accounts (every API query is scoped to an account).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient

from api.app import create_app
from config import Secret, Settings
from tests.s3_support import S3Server, SeaweedFS, start_moto

POSTGRES_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
POSTGRES_URL_TEMPLATE = "postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
DATABASE_KINDS = ("sqlite", "postgresql")
SHORTEST_LEAK = 5
"""A run of this many characters of a secret found in a text counts as a (partial) leak."""


def assert_hidden(secret: str, text: str) -> None:
    """No piece of ``secret`` of :data:`SHORTEST_LEAK` characters or more is in ``text``, and
    neither is the whole of it percent-encoded."""
    size = min(len(secret), SHORTEST_LEAK)
    for start in range(len(secret) - size + 1):
        piece = secret[start : start + size]
        assert piece not in text, f"{piece!r} of the secret {secret!r} leaked: {text[-3000:]!r}"
    for encoded in (quote(secret, safe=""), quote(secret, safe="/"), quote_plus(secret)):
        assert encoded not in text, f"{secret!r} leaked encoded as {encoded!r}"


async def postgres_admin(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this test session (dropped afterwards)."""
    name = f"liverelay_t_{secrets.token_hex(6)}"
    try:
        asyncio.run(postgres_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.fail(
            "PostgreSQL is required by the API tests: cannot create a database at "
            f"{POSTGRES_ADMIN_DSN} ({type(exc).__name__}: {exc}). Start it, e.g. "
            "`pg_ctlcluster <version> main start`.",
            pytrace=False,
        )
    yield POSTGRES_URL_TEMPLATE.format(name=name)
    asyncio.run(postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """URL of a SQLite file for this test session."""
    path = tmp_path_factory.mktemp("sqlite") / "liverelay.db"
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(params=DATABASE_KINDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """The session's SQLite or PostgreSQL URL (each test runs once with each)."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def app_settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings for a test app: the test's database, data in ``tmp_path``, fixed public URLs.
    Retention is off: the database is shared by the session's tests, some of which make rows
    with old timestamps (``tests/api/test_retention.py`` turns it on)."""
    return Settings(
        data_dir=tmp_path,
        database_url=Secret(database_url),
        http_port=0,
        rtmp_port=0,
        metrics_port=0,
        public_http_url="http://testserver",
        public_rtmp_url="rtmp://testserver",
        retention_days=0,
    )


@pytest.fixture
def api_app(app_settings: Settings) -> web.Application:
    """The real app for ``app_settings`` (not started; ``api_client`` starts it)."""
    return create_app(app_settings)


@pytest.fixture
async def api_client(aiohttp_client: AiohttpClient, api_app: web.Application) -> TestClient:
    """A test client on the started ``api_app``."""
    return await aiohttp_client(api_app)


HOSTILE_HOSTS = [
    "\uff11\uff12\uff17.0.0.1",  # full-width digits
    "127\u30020\u30020\u30021",  # ideographic full stops
    "\u2460\u2461\u2466.0.0.1",  # circled digits
    "127\uff0e0\uff0e0\uff0e1",  # full-width full stops
    "\uff2c\uff2f\uff23\uff21\uff2c\uff28\uff2f\uff33\uff34",
    "2130706433",  # decimal
    "0177.0.0.1",  # octal
    "0x7f.1",  # hex
    "0x7f000001",
    "017700000001",
    "127.0.0.1.",  # trailing dot
    "127.1.",
    "localhost.",
    "10.0.0.5",
    "0",
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::ffff:7f00:1]",
    "[::ffff:10.0.0.5]",
    "[::127.0.0.1]",  # IPv4-compatible (::/96)
    "[::7f00:1]",
    "[::8.8.8.8]",
    "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
    "[64:ff9b::10.0.0.5]",
    "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254
    "[64:ff9b:1::808:808]",  # local-use NAT64
    "[2002:7f00:1::1]",  # 6to4 of 127.0.0.1
    "[2002:a00:5::]",  # 6to4 of 10.0.0.5
    "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",  # Teredo
    "[fe80::1%25eth0]",
]
"""Hosts that reach loopback, private or link-local addresses, in the spellings a URL parser,
the HTTP client or the system resolver turn into one."""


class CountingListener:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts (answering each with
    an HTTP 204 and closing), to show that nothing reached it."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(OSError):
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            await writer.drain()
        writer.close()


@pytest.fixture
async def counting_listener() -> AsyncIterator[CountingListener]:
    """A :class:`CountingListener` listening while the test runs."""
    listener = CountingListener()
    server = await asyncio.start_server(listener.handle, "127.0.0.1", 0)
    listener.port = server.sockets[0].getsockname()[1]
    try:
        yield listener
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS (``weed mini``) on loopback with signature checks, once per test session."""
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[S3Server]:
    """moto's S3 server in a thread (a lighter fake that checks no signature)."""
    server, handle = start_moto()
    try:
        yield server
    finally:
        handle.stop()  # type: ignore[attr-defined]
