"""HLS playback routes: whitelisted names only, no way out of the stream's directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient

from api.app import create_app
from config import Settings
from tests.api.conftest import assert_error

STREAM_ID = "60e2fe88135c9810f490f3b4"
RECORDING_ID = "60e2fe88135c9810f490f3c9"
PLAYLIST = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg_00001.ts\n"
SEGMENT = bytes(range(256)) * 64


@pytest.fixture
def live_files(app_settings: Settings) -> Path:
    directory = app_settings.live_dir / STREAM_ID
    directory.mkdir(parents=True)
    (directory / "index.m3u8").write_bytes(PLAYLIST)
    (directory / "seg_00001.ts").write_bytes(SEGMENT)
    (directory / "notes.txt").write_bytes(b"private")
    secret = app_settings.data_dir / "secret.ts"
    secret.write_bytes(b"outside")
    os.symlink(secret, directory / "escape.ts")
    os.symlink(app_settings.data_dir, app_settings.live_dir / ("b" * 24))
    return directory


async def test_playlist_and_segment_are_served(
    api_client: TestClient, live_files: Path, app_settings: Settings
) -> None:
    response = await api_client.get(f"/live/{STREAM_ID}/index.m3u8")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["Access-Control-Allow-Origin"] == app_settings.cors_allow_origin
    assert await response.read() == PLAYLIST

    response = await api_client.get(f"/live/{STREAM_ID}/seg_00001.ts")
    assert response.status == 200
    assert response.headers["Content-Type"] == "video/mp2t"
    assert response.headers["Cache-Control"] == "public, max-age=86400, immutable"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert await response.read() == SEGMENT

    response = await api_client.head(f"/live/{STREAM_ID}/seg_00001.ts")
    assert response.status == 200
    assert response.headers["Content-Length"] == str(len(SEGMENT))


async def test_a_standard_stream_has_no_multivariant_playlist(
    api_client: TestClient, live_files: Path
) -> None:
    """Its codecs are only known from fMP4 initialization segments (low-latency mode)."""
    response = await api_client.get(f"/live/{STREAM_ID}/multivariant.m3u8")
    body = await assert_error(response, 404, "not_found")
    assert "low-latency mode" in body["message"]


async def test_live_files_left_by_an_earlier_process_are_not_served(
    aiohttp_client: AiohttpClient, app_settings: Settings
) -> None:
    """A process killed mid-stream leaves its live window on disk, with no ENDLIST. Nothing is
    live in a process that just started, so it must not serve that frozen window as live."""
    left = app_settings.live_dir / STREAM_ID
    left.mkdir(parents=True)
    (left / "index.m3u8").write_bytes(PLAYLIST)
    (left / "seg_00001.ts").write_bytes(SEGMENT)

    client = await aiohttp_client(create_app(app_settings))

    for name in ("index.m3u8", "seg_00001.ts"):
        response = await client.get(f"/live/{STREAM_ID}/{name}")
        assert response.status == 404, name
    assert not left.exists()


async def test_recordings_are_served_by_recording_id(
    api_client: TestClient, app_settings: Settings
) -> None:
    directory = app_settings.recordings_dir / RECORDING_ID
    directory.mkdir(parents=True)
    (directory / "index.m3u8").write_bytes(PLAYLIST)
    (directory / "init.mp4").write_bytes(SEGMENT)
    response = await api_client.get(f"/recordings/{RECORDING_ID}/index.m3u8")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert await response.read() == PLAYLIST
    response = await api_client.get(f"/recordings/{RECORDING_ID}/init.mp4")
    assert response.headers["Content-Type"] == "video/mp4"
    assert await response.read() == SEGMENT
    await assert_error(await api_client.get(f"/recordings/{'c' * 24}/index.m3u8"), 404, "not_found")
    # Recordings are not reachable through the live paths, nor live files through these.
    await assert_error(await api_client.get(f"/live/{RECORDING_ID}/init.mp4"), 404, "not_found")


async def test_missing_stream_or_segment_is_404_json(
    api_client: TestClient, live_files: Path
) -> None:
    for path in [
        f"/live/{'a' * 24}/index.m3u8",
        f"/live/{STREAM_ID}/seg_99999.ts",
        f"/live/{STREAM_ID}/storage/index.m3u8",
    ]:
        await assert_error(await api_client.get(path), 404, "not_found")


@pytest.mark.parametrize(
    "path",
    [
        f"/live/{STREAM_ID}/..%2f..%2fetc%2fpasswd",
        f"/live/{STREAM_ID}/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        f"/live/{STREAM_ID}/%2e%2e",
        f"/live/{STREAM_ID}/..%5c..%5csecret.ts",
        f"/live/{STREAM_ID}/%2fetc%2fpasswd",
        f"/live/{STREAM_ID}/%2e%2e%2fsecret.ts",
        f"/live/{STREAM_ID}/escape.ts",
        f"/live/{STREAM_ID}/notes.txt",
        f"/live/{STREAM_ID}/index.m3u8.bak",
        f"/live/{STREAM_ID}/seg_00001.ts%00.m3u8",
        f"/live/{STREAM_ID}/.ts",
        f"/live/{'b' * 24}/secret.ts",
        f"/live/{'B' * 24}/index.m3u8",
        "/live/..%2f..%2f/index.m3u8",
        "/live/%2e%2e/seg_00001.ts",
        f"/live/{STREAM_ID}/storage/..%2f..%2fsecret.ts",
        f"/live/{STREAM_ID}/storage/%2e%2e%2f{STREAM_ID}%2fseg_00001.ts",
        f"/recordings/{STREAM_ID}/index.m3u8",
        f"/recordings/{STREAM_ID}/seg_00001.ts",
        f"/recordings/..%2flive%2f{STREAM_ID}/seg_00001.ts",
        f"/recordings/{'b' * 24}/secret.ts",
        "/recordings/%2e%2e/secret.ts",
    ],
)
async def test_traversal_attempts_are_404_json(
    api_client: TestClient, live_files: Path, path: str
) -> None:
    response = await api_client.get(path, allow_redirects=False)
    await assert_error(response, 404, "not_found")
    assert b"outside" not in await response.read()


async def test_raw_dotdot_paths_are_not_served(api_client: TestClient, live_files: Path) -> None:
    # Sent as-is on the wire (no client-side normalisation).
    reader, writer = await _open(api_client)
    try:
        writer.write(
            f"GET /live/{STREAM_ID}/../../secret.ts HTTP/1.1\r\nHost: x\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    status_line = answer.split(b"\r\n", 1)[0]
    assert b" 404 " in status_line, answer[:200]
    assert b"outside" not in answer


async def _open(client: TestClient):  # type: ignore[no-untyped-def]
    import asyncio

    assert client.port is not None
    return await asyncio.open_connection("127.0.0.1", client.port)
