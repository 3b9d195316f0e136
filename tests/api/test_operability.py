"""``/readyz`` and ``/metrics`` on the real app."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient

from api.app import create_app
from api.keys import DB_ENGINE, METRICS_PORT, READINESS_WARNINGS
from api.routes.health import READINESS_WARNING_INTERVAL
from config import Secret, Settings, SettingsError
from ingest.ratelimit import WarningRateLimiter
from tests.api.conftest import assert_error
from tests.conftest import postgres_admin
from tests.fakes import FakeClock
from tests.polling import eventually

METRICS_TOKEN = "scrape-token-5f1c9e"


async def test_ready_when_database_ffmpeg_and_storage_are_fine(api_client: TestClient) -> None:
    response = await api_client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "ffmpeg": "ok", "storage": "ok"},
    }


async def test_not_ready_when_storage_is_not_writable(
    aiohttp_client: AiohttpClient, app_settings: Settings, tmp_path: Path
) -> None:
    # Root ignores permission bits, so make the data directory something no one can write
    # into: a regular file.
    not_a_directory = tmp_path / "not-a-directory"
    not_a_directory.write_text("x")
    client = await aiohttp_client(create_app(replace(app_settings, data_dir=not_a_directory)))
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body == {
        "status": "unavailable",
        "checks": {"database": "ok", "ffmpeg": "ok", "storage": "failed"},
    }


async def assert_only_named(client: TestClient, failing: str, hidden: Sequence[str]) -> None:
    """``/readyz`` answers 503 naming ``failing`` as the one failed check, and none of
    ``hidden`` (hosts, users, paths, exception text) appears in its body."""
    response = await client.get("/readyz")
    assert response.status == 503
    text = await response.text()
    checks = {"database": "ok", "ffmpeg": "ok", "storage": "ok", failing: "failed"}
    assert await response.json() == {"status": "unavailable", "checks": checks}
    for private in hidden:
        assert private not in text


async def test_readiness_detail_goes_to_the_log_not_the_body(
    aiohttp_client: AiohttpClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone may ask ``/readyz``: it names the failing checks, and only the log says why
    (paths, database host and user, exception text)."""
    caplog.set_level(logging.DEBUG)
    data_dir = tmp_path / "private-data-dir"
    data_dir.mkdir()
    database = data_dir / "liverelay.db"
    settings = Settings(
        data_dir=data_dir,
        database_url=Secret(f"sqlite+aiosqlite:///{database}"),
        http_port=0,
        rtmp_port=0,
        metrics_port=-1,
    )
    client = await aiohttp_client(create_app(settings))
    # The database file turns into a directory: every new connection fails to open it. The
    # app's background work (heartbeat, leases) may open the file again between the unlink and
    # the mkdir; then the swap is tried again. A connection opened before the unlink still
    # reaches the unlinked file, so the pool is emptied once the swap holds.
    await client.app[DB_ENGINE].dispose()

    def swapped() -> bool:
        database.unlink(missing_ok=True)
        try:
            database.mkdir()
        except FileExistsError:
            return False
        return True

    await eventually(swapped, 10, message="the database file kept coming back")
    await client.app[DB_ENGINE].dispose()
    await assert_only_named(
        client, "database", (str(tmp_path), "private-data-dir", "sqlite", "unable to open", "Error")
    )
    assert "readiness check database failed" in caplog.text
    assert "unable to open database file" in caplog.text


@pytest.fixture
async def own_postgres_role() -> AsyncIterator[str]:
    """A PostgreSQL role of its own, owning a database of the same name (dropped afterwards)."""
    name = f"liverelay_ready_{secrets.token_hex(4)}"
    await postgres_admin(f'CREATE ROLE "{name}" LOGIN')
    await postgres_admin(f'CREATE DATABASE "{name}" OWNER "{name}"')
    try:
        yield name
    finally:
        await postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await postgres_admin(f'DROP ROLE IF EXISTS "{name}"')


async def test_readiness_hides_the_database_user_and_host(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    own_postgres_role: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    role = own_postgres_role
    url = f"postgresql+asyncpg://{role}@127.0.0.1:5432/{role}"
    settings = Settings(
        data_dir=tmp_path, database_url=Secret(url), http_port=0, rtmp_port=0, metrics_port=-1
    )
    client = await aiohttp_client(create_app(settings))
    await client.app[DB_ENGINE].dispose()
    await postgres_admin(f'ALTER ROLE "{role}" NOLOGIN')  # every new connection is refused
    await assert_only_named(client, "database", (role, "127.0.0.1", "5432", "permitted"))
    assert f'role "{role}" is not permitted to log in' in caplog.text


async def test_readiness_hides_the_storage_path(
    aiohttp_client: AiohttpClient,
    app_settings: Settings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    not_a_directory = tmp_path / "secret-path-name"
    not_a_directory.write_text("x")
    client = await aiohttp_client(create_app(replace(app_settings, data_dir=not_a_directory)))
    await assert_only_named(client, "storage", ("secret-path-name", "NotADirectoryError"))
    assert "readiness check storage failed: NotADirectoryError" in caplog.text
    assert "secret-path-name" in caplog.text


async def test_metrics_are_not_on_the_public_port_without_a_token(
    api_client: TestClient,
) -> None:
    response = await api_client.get("/metrics")
    await assert_error(response, 404, "not_found")
    assert "liverelay_" not in await response.text()


async def test_metrics_on_the_public_port_need_the_bearer_token(
    aiohttp_client: AiohttpClient, app_settings: Settings
) -> None:
    settings = replace(app_settings, metrics_token=Secret(METRICS_TOKEN), metrics_port=-1)
    client = await aiohttp_client(create_app(settings))
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {METRICS_TOKEN}x"},
        {"Authorization": METRICS_TOKEN},  # the scheme is required
        {"Authorization": f"Basic {METRICS_TOKEN}"},
    ):
        response = await client.get("/metrics", headers=headers)
        await assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "liverelay_" not in await response.text()
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status == 200
    assert "liverelay_live_streams 0.0" in await response.text()


async def test_metrics_listener_is_separate_and_can_be_turned_off(
    aiohttp_client: AiohttpClient, app_settings: Settings
) -> None:
    assert app_settings.metrics_port == 0  # tests pick a free port
    client = await aiohttp_client(create_app(app_settings))
    port = client.app[METRICS_PORT]
    assert port not in (0, client.port)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/v1/livestreams") as other:
            assert other.status == 404  # the listener serves /metrics only
        async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200
            assert "liverelay_live_streams 0.0" in await response.text()
    off = await aiohttp_client(create_app(replace(app_settings, metrics_port=-1)))
    assert METRICS_PORT not in off.app


async def test_metrics_exposition(api_client: TestClient) -> None:
    await api_client.get("/healthz")
    await api_client.get("/v1/livestreams")  # 401, still timed
    response = await scrape(api_client)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    assert "liverelay_live_streams 0.0" in text
    assert "liverelay_rtmp_connections 0.0" in text
    healthz = 'method="GET",route="/healthz",status="200"'
    assert f"liverelay_http_request_duration_seconds_count{{{healthz}}} 1.0" in text
    assert 'route="/v1/livestreams",status="401"' in text
    assert "/v1/livestreams/" not in text.replace('route="/v1/livestreams/{id}"', "")


async def test_the_event_loop_lag_is_probed_while_serving(api_client: TestClient) -> None:
    async def probed() -> bool:
        text = await (await scrape(api_client)).text()
        counts = [line for line in text.splitlines() if line.startswith("liverelay_event_loop_")]
        return any(
            line.startswith("liverelay_event_loop_lag_seconds_count ") and float(line.split()[1])
            for line in counts
        )

    await eventually(probed, message="no event-loop lag probe in /metrics")


class Scraped:
    """A ``/metrics`` answer read from the metrics listener."""

    def __init__(self, status: int, headers: dict[str, str], body: str) -> None:
        self.status, self.headers, self.body = status, headers, body

    async def text(self) -> str:
        return self.body


async def scrape(client: TestClient) -> Scraped:
    """``GET /metrics`` on the metrics listener of ``client``'s app."""
    url = f"http://127.0.0.1:{client.app[METRICS_PORT]}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return Scraped(response.status, dict(response.headers), await response.text())


@pytest.mark.parametrize("value", ["-2", "65536", "nine"])
def test_metrics_port_setting_is_checked(value: str) -> None:
    with pytest.raises(SettingsError, match="LIVERELAY_METRICS_PORT"):
        Settings.from_env({"LIVERELAY_METRICS_PORT": value})


async def test_a_failing_check_warns_at_a_limited_rate(
    aiohttp_client: AiohttpClient,
    app_settings: Settings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Anyone may ask ``/readyz`` as often as they like: while a check fails, its warning is
    logged once per interval with the number held back, the rest at DEBUG."""
    caplog.set_level(logging.DEBUG, logger="api.routes.health")
    not_a_directory = tmp_path / "not-a-directory"
    not_a_directory.write_text("x")
    app = create_app(replace(app_settings, data_dir=not_a_directory))
    clock = FakeClock()
    app[READINESS_WARNINGS] = WarningRateLimiter(READINESS_WARNING_INTERVAL, clock=clock)
    client = await aiohttp_client(app)

    def warnings() -> list[str]:  # of readiness (the unusable data dir is warned about too)
        return [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING and r.name == "api.routes.health"
        ]

    for _ in range(20):
        assert (await client.get("/readyz")).status == 503
    assert len(warnings()) == 1 and "readiness check storage failed" in warnings()[0]
    assert sum("readiness check storage failed" in r.getMessage() for r in caplog.records) == 20
    clock.advance(READINESS_WARNING_INTERVAL)
    assert (await client.get("/readyz")).status == 503
    assert len(warnings()) == 2 and "(19 more since the last warning)" in warnings()[1]
