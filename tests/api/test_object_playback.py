"""Playback of recordings kept in object storage (SeaweedFS): playlists served by the app,
segments redirected to presigned URLs, a clear 503 when the store is unreachable."""

from __future__ import annotations

import dataclasses
import secrets

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient

from api.app import create_app
from api.keys import METRICS_PORT
from config import Settings
from tests.api.conftest import assert_error
from tests.s3_support import S3Server, free_ports, sync_client

RECORDING_ID = "d" * 24
PLAYLIST = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\nseg_00000.ts\n#EXT-X-ENDLIST\n"


async def client_for(
    aiohttp_client: AiohttpClient,
    app_settings: Settings,
    server: S3Server,
    endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[TestClient, str]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    prefix = f"api-{secrets.token_hex(4)}"
    settings = dataclasses.replace(
        app_settings, storage_url=f"s3://{server.bucket}/{prefix}", s3_endpoint=endpoint
    )
    return await aiohttp_client(create_app(settings)), f"{prefix}/"


async def test_playlists_are_served_and_segments_redirected_to_signed_urls(
    aiohttp_client: AiohttpClient,
    app_settings: Settings,
    seaweedfs: S3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, prefix = await client_for(
        aiohttp_client, app_settings, seaweedfs, seaweedfs.endpoint, monkeypatch
    )
    s3 = sync_client(seaweedfs)
    media = secrets.token_bytes(1880)
    s3.put_object(Bucket=seaweedfs.bucket, Key=f"{prefix}{RECORDING_ID}/seg_00000.ts", Body=media)
    s3.put_object(
        Bucket=seaweedfs.bucket, Key=f"{prefix}{RECORDING_ID}/index.m3u8", Body=PLAYLIST.encode()
    )

    playlist = await client.get(f"/recordings/{RECORDING_ID}/index.m3u8")
    assert playlist.status == 200
    assert await playlist.text() == PLAYLIST
    assert playlist.headers["Content-Type"] == "application/vnd.apple.mpegurl"

    redirect = await client.get(f"/recordings/{RECORDING_ID}/seg_00000.ts", allow_redirects=False)
    assert redirect.status == 302
    location = redirect.headers["Location"]
    assert location.startswith(f"{seaweedfs.endpoint}/{seaweedfs.bucket}/{prefix}{RECORDING_ID}/")
    async with aiohttp.ClientSession() as http, http.get(location) as fetched:
        assert fetched.status == 200
        assert await fetched.read() == media

    await assert_error(await client.get(f"/recordings/{'e' * 24}/index.m3u8"), 404, "not_found")
    for path in (f"/recordings/{RECORDING_ID}/secret.txt", "/recordings/not-an-id/seg_00000.ts"):
        await assert_error(await client.get(path, allow_redirects=False), 404, "not_found")


async def test_an_unreachable_store_answers_503_and_the_app_goes_on(
    aiohttp_client: AiohttpClient,
    app_settings: Settings,
    seaweedfs: S3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed = f"http://127.0.0.1:{free_ports(1)[0]}"
    client, _ = await client_for(aiohttp_client, app_settings, seaweedfs, closed, monkeypatch)
    answer = await client.get(f"/recordings/{RECORDING_ID}/index.m3u8")
    assert answer.headers["Retry-After"] == "5"
    await assert_error(answer, 503, "service_unavailable")
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 503
    body = await ready.json()
    assert body["checks"]["objectStorage"] == "failed"
    assert {name for name, result in body["checks"].items() if result == "failed"} == {
        "objectStorage"
    }
    assert "127.0.0.1" not in await ready.text()  # the reason is in the log only


async def test_readiness_checks_the_store_and_metrics_show_the_upload_backlog(
    aiohttp_client: AiohttpClient,
    app_settings: Settings,
    seaweedfs: S3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, _ = await client_for(
        aiohttp_client, app_settings, seaweedfs, seaweedfs.endpoint, monkeypatch
    )
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"]["objectStorage"] == "ok"
    url = f"http://127.0.0.1:{client.app[METRICS_PORT]}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as scraped:
        text = await scraped.text()
    for line in (
        "liverelay_upload_backlog_bytes 0.0",
        "liverelay_upload_backlog_segments 0.0",
        "liverelay_upload_failures_total 0.0",
        "liverelay_upload_recordings_failed_total 0.0",
    ):
        assert line in text
