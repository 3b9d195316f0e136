"""Shared database and app fixtures.

``database_url`` is parametrized: every test that uses it (directly or through ``app_settings``,
``api_app`` or ``api_client``) runs on SQLite and on PostgreSQL. PostgreSQL must listen on
127.0.0.1:5432 with user ``postgres`` and trust auth; each test session creates its own
``liverelay_t_<hex>`` database and drops it at the end, so concurrent runs never collide. If
PostgreSQL is unreachable the tests fail (they do not skip).

Databases are shared by the tests of a session; tests isolate themselves by creating their own
accounts (every API query is scoped to an account).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient

from api.app import create_app
from config import Secret, Settings

POSTGRES_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
POSTGRES_URL_TEMPLATE = "postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
DATABASE_KINDS = ("sqlite", "postgresql")


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
