"""Playback of recordings kept in object storage (SeaweedFS): playlists served by the app,
segments redirected to presigned URLs, a clear 503 when the store is unreachable."""

from __future__ import annotations

import dataclasses
import secrets
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient

from api import queries
from api.app import create_app
from api.keys import DB_SESSIONMAKER, METRICS_PORT
from api.playback_tokens import issue_playback_token
from config import Settings
from tests.api.conftest import assert_error, create_stream, new_account
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


async def test_a_signed_stream_s_segments_are_redirected_only_with_a_valid_token(
    aiohttp_client: AiohttpClient,
    app_settings: Settings,
    seaweedfs: S3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The presigned URL is itself a credential: none is handed out without the token."""
    client, prefix = await client_for(
        aiohttp_client, app_settings, seaweedfs, seaweedfs.endpoint, monkeypatch
    )
    account = await new_account(client)
    stream = await create_stream(client, account, playbackPolicy="signed")
    async with client.app[DB_SESSIONMAKER]() as session, session.begin():
        recording = await queries.create_recording(session, stream["id"], datetime.now(UTC))
    s3 = sync_client(seaweedfs)
    s3.put_object(Bucket=seaweedfs.bucket, Key=f"{prefix}{recording.id}/seg_00000.ts", Body=b"x")
    response = await client.post("/v1/signing-keys", headers=account.headers)
    key = await response.json()
    token = issue_playback_token(stream["id"], key["id"], key["privateKey"], 600)
    segment = f"/recordings/{recording.id}/seg_00000.ts"

    refused = await client.get(segment, allow_redirects=False)
    await assert_error(refused, 403, "forbidden")
    assert "Location" not in refused.headers
    redirect = await client.get(segment, params={"token": token}, allow_redirects=False)
    assert redirect.status == 302
