"""``/readyz`` and ``/metrics`` on the real app."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient

from api.app import create_app
from config import Settings


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
    assert body["status"] == "unavailable"
    assert body["checks"]["storage"].startswith("NotADirectoryError")
    assert body["checks"]["database"] == "ok" and body["checks"]["ffmpeg"] == "ok"


async def test_metrics_exposition(api_client: TestClient) -> None:
    await api_client.get("/healthz")
    await api_client.get("/v1/livestreams")  # 401, still timed
    response = await api_client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    assert "liverelay_live_streams 0.0" in text
    assert "liverelay_rtmp_connections 0.0" in text
    healthz = 'method="GET",route="/healthz",status="200"'
    assert f"liverelay_http_request_duration_seconds_count{{{healthz}}} 1.0" in text
    assert 'route="/v1/livestreams",status="401"' in text
    assert "/v1/livestreams/" not in text.replace('route="/v1/livestreams/{id}"', "")
