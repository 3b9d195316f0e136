"""``LIVERELAY_ACCESS_LOG``: which requests get an access-log line (real HTTP, real app)."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient

from api.access_log import AccessLogPolicy, runner_options
from api.app import create_app
from api.keys import ACCESS_LOG_POLICY
from config import Settings
from config.settings import SettingsError
from tests.polling import eventually

RECORDING_ID = "0123456789abcdef01234567"
ACCESS = "aiohttp.access"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _client(
    aiohttp_client: AiohttpClient, settings: Settings, mode: str, clock: FakeClock | None = None
) -> TestClient:
    settings = dataclasses.replace(settings, access_log=mode)
    directory = settings.recordings_dir / RECORDING_ID
    directory.mkdir(parents=True)
    (directory / "index.m3u8").write_text("#EXTM3U\n#EXT-X-ENDLIST\n")
    app = create_app(settings)
    if clock is not None:
        app[ACCESS_LOG_POLICY] = AccessLogPolicy(
            mode, logger=logging.getLogger(ACCESS), interval=60, clock=clock
        )
    server = TestServer(app)
    await server.start_server(**runner_options())  # as ``liverelay serve`` runs it
    return await aiohttp_client(server)


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == ACCESS and text in r.getMessage()]


async def _settled(caplog: pytest.LogCaptureFixture, client: TestClient) -> None:
    """Ask for ``/healthz`` (always logged) and wait for its line: the lines of the requests
    before it on the same connection are written by then."""
    async with client.get("/healthz") as response:
        assert response.status == 200
    await eventually(lambda: _lines(caplog, "/healthz"), message="no line for /healthz")


async def test_api_mode_leaves_out_successful_playback_but_logs_errors_and_the_api(
    aiohttp_client: AiohttpClient, app_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    client = await _client(aiohttp_client, app_settings, "api")
    for _ in range(3):
        async with client.get(f"/recordings/{RECORDING_ID}/index.m3u8") as response:
            assert response.status == 200
    async with client.get("/live/ffffffffffffffffffffffff/index.m3u8") as response:
        assert response.status == 404
    async with client.get(f"/recordings/{RECORDING_ID}/missing.ts") as response:
        assert response.status == 404
    async with client.get("/v1/livestreams") as response:
        assert response.status == 401
    await _settled(caplog, client)
    assert _lines(caplog, f"/recordings/{RECORDING_ID}/index.m3u8") == []
    assert len(_lines(caplog, "/live/ffffffffffffffffffffffff/index.m3u8")) == 1
    assert len(_lines(caplog, f"/recordings/{RECORDING_ID}/missing.ts")) == 1
    assert len(_lines(caplog, "/v1/livestreams")) == 1


async def test_all_mode_logs_every_playback_request(
    aiohttp_client: AiohttpClient, app_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    client = await _client(aiohttp_client, app_settings, "all")
    for _ in range(2):
        async with client.get(f"/recordings/{RECORDING_ID}/index.m3u8") as response:
            assert response.status == 200
    await _settled(caplog, client)
    assert len(_lines(caplog, f"/recordings/{RECORDING_ID}/index.m3u8")) == 2


async def test_api_mode_sums_up_a_recordings_playback_once_per_interval(
    aiohttp_client: AiohttpClient, app_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    clock = FakeClock()
    client = await _client(aiohttp_client, app_settings, "api", clock)
    summary = f"playback of recording {RECORDING_ID}"
    for _ in range(4):
        async with client.get(f"/recordings/{RECORDING_ID}/index.m3u8") as response:
            assert response.status == 200
    await _settled(caplog, client)
    assert _lines(caplog, summary) == []
    clock.now += 60
    async with client.get(f"/recordings/{RECORDING_ID}/index.m3u8") as response:
        assert response.status == 200
    lines = await eventually(lambda: _lines(caplog, summary), message="no summary line")
    assert lines == [f"{summary}: 5 requests answered in the last 60 s"]


def test_an_unknown_access_log_mode_is_refused_by_name() -> None:
    with pytest.raises(SettingsError, match="LIVERELAY_ACCESS_LOG"):
        Settings.from_env({"LIVERELAY_ACCESS_LOG": "everything"})
    assert Settings.from_env({"LIVERELAY_ACCESS_LOG": "all"}).access_log == "all"
    assert Settings().access_log == "api"
