"""Thumbnail routes on the real app: live (standard mode, segments on disk) and recordings, their
sizes, caching, errors and signed playback. The segments are real ``testsrc2`` H.264 made by
ffmpeg once per module; the live path is admitted without RTMP (:func:`go_live`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import imageio_ffmpeg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp.plugin import AiohttpClient

from api import queries
from api.access_log import PLAYBACK_ROUTES
from api.keys import DB_SESSIONMAKER, METRICS, SETTINGS, THUMBNAILS
from api.playback_tokens import issue_playback_token
from config import Settings
from tests.api.conftest import (
    AccountCredentials,
    assert_error,
    create_stream,
    go_live,
    new_account,
)
from tests.api.test_object_playback import client_for
from tests.api.test_signed_playback import assert_forbidden, new_key
from tests.s3_support import S3Server, sync_client
from tests.thumbnail_support import assert_pattern, look_at, make_media

UNKNOWN_ID = "60e2fe88135c9810f490f3b4"


@dataclass(frozen=True)
class Media:
    video: bytes
    """2 s of 640x360 testsrc2, MPEG-TS."""
    audio: bytes
    """2 s of AAC alone, MPEG-TS."""


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    directory = tmp_path_factory.mktemp("thumbnail-segments")
    return Media(
        make_media(ffmpeg, directory / "v.ts"),
        make_media(ffmpeg, directory / "a.ts", audio_only=True),
    )


def write_live(settings: Settings, stream_id: str, segment: bytes) -> None:
    """A live window of two segments, as the HLS output writes it."""
    directory = settings.live_dir / stream_id
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2"]
    for number in (1, 2):
        (directory / f"seg_{number:05d}.ts").write_bytes(segment)
        lines += ["#EXTINF:2.000,", f"seg_{number:05d}.ts"]
    (directory / "index.m3u8").write_text("\n".join(lines) + "\n")


async def live_stream(
    client: TestClient, account: AccountCredentials, segment: bytes, **body: object
) -> str:
    """A stream live in standard mode (its MPEG-TS window written as the HLS output would)."""
    stream = await create_stream(client, account, **{"latencyMode": "standard", **body})
    await go_live(client, stream["id"])
    write_live(client.app[SETTINGS], stream["id"], segment)
    return str(stream["id"])


async def recording(client: TestClient, stream_id: str, segment: bytes) -> str:
    """A ready recording of two 2 s segments (4 s)."""
    async with client.app[DB_SESSIONMAKER]() as session, session.begin():
        row = await queries.create_recording(session, stream_id, datetime.now(UTC))
        row.status = "ready"
    write_recording(client.app[SETTINGS].recordings_dir / row.id, segment)
    return row.id


def write_recording(directory: Path, segment: bytes, *, fresh: bool = True) -> None:
    """Two segments and their playlist in ``directory`` (made, unless not ``fresh``)."""
    directory.mkdir(parents=True, exist_ok=not fresh)
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", "#EXT-X-PLAYLIST-TYPE:VOD"]
    for number in (0, 1):
        (directory / f"r-{number}.ts").write_bytes(segment)
        lines += ["#EXTINF:2.000,", f"r-{number}.ts"]
    (directory / "index.m3u8").write_text("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n")


async def test_a_live_thumbnail_is_decoded_once_and_then_served_from_the_cache(
    api_client: TestClient, account: AccountCredentials, media: Media
) -> None:
    stream_id = await live_stream(api_client, account, media.video)
    cache = api_client.app[THUMBNAILS]
    for _ in range(5):
        response = await api_client.get(f"/live/{stream_id}/thumbnail.jpg")
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "image/jpeg"
        assert response.headers["Cache-Control"] == "public, max-age=5"
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert_pattern(await response.read(), (640, 360))
    assert (cache.decoded, cache.from_cache) == (1, 4)

    response = await api_client.get(f"/live/{stream_id}/thumbnail.png", params={"width": "320"})
    assert response.headers["Content-Type"] == "image/png"
    assert_pattern(await response.read(), (320, 180), codec="png")
    response = await api_client.get(
        f"/live/{stream_id}/thumbnail.jpg", params={"width": "400", "height": "90"}
    )
    picture = look_at(await response.read())
    assert (picture.width, picture.height) == (160, 90)  # fits inside 400x90
    assert cache.decoded == 3

    metrics = api_client.app[METRICS].render().decode()
    assert 'liverelay_thumbnails_total{result="decoded"} 3.0' in metrics
    assert 'liverelay_thumbnails_total{result="cached"} 4.0' in metrics

    response = await api_client.post(
        f"/v1/livestreams/{stream_id}/complete", headers=account.headers
    )
    assert response.status == 200
    assert len(cache) == 0  # the session ended: its thumbnails are dropped
    await assert_error(await api_client.get(f"/live/{stream_id}/thumbnail.jpg"), 404, "not_live")


async def test_live_thumbnail_errors(
    api_client: TestClient, account: AccountCredentials, media: Media
) -> None:
    unknown = f"/live/{UNKNOWN_ID}/thumbnail.jpg"
    await assert_error(await api_client.get(unknown), 404, "not_found")
    await assert_error(await api_client.get("/live/not-an-id/thumbnail.png"), 404, "not_found")
    idle = await create_stream(api_client, account)
    url = f"/live/{idle['id']}/thumbnail.jpg"
    await assert_error(await api_client.get(url), 404, "not_live")
    for value in ("abc", "0", "15", "1921", "-5", "1.5", ""):
        response = await api_client.get(url, params={"width": value})
        await assert_error(response, 400, "validation_error", ["width"])
    response = await api_client.get(url, params={"height": "99999"})
    body = await assert_error(response, 400, "validation_error", ["height"])
    assert "16 to 1920" in body["message"]

    audio = await live_stream(api_client, account, media.audio)
    response = await api_client.get(f"/live/{audio}/thumbnail.jpg")
    body = await assert_error(response, 404, "no_video")
    assert body["message"] == "the stream has no video"

    waiting = await create_stream(api_client, account, latencyMode="standard")
    await go_live(api_client, waiting["id"])  # live, but no segment yet
    response = await api_client.get(f"/live/{waiting['id']}/thumbnail.jpg")
    await assert_error(response, 503, "thumbnail_not_ready")
    assert response.headers["Retry-After"] == "2"


async def test_a_recording_thumbnail_at_a_time(
    api_client: TestClient, account: AccountCredentials, media: Media
) -> None:
    stream = await create_stream(api_client, account)
    recording_id = await recording(api_client, stream["id"], media.video)
    url = f"/recordings/{recording_id}/thumbnail.jpg"
    response = await api_client.get(url, params={"time": "3", "height": "180"})
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "public, max-age=86400, immutable"
    assert_pattern(await response.read(), (320, 180))
    response = await api_client.get(f"/recordings/{recording_id}/thumbnail.png")
    assert_pattern(await response.read(), (640, 360), codec="png")
    response = await api_client.get(url, params={"time": "4"})  # the very end
    assert response.status == 200

    body = await assert_error(
        await api_client.get(url, params={"time": "4.5"}), 400, "time_out_of_range", ["time"]
    )
    assert body["message"] == "time 4.5 is beyond the end of the recording (4.000 s)"
    for value in ("abc", "-1", "nan", "inf", ""):
        response = await api_client.get(url, params={"time": value})
        await assert_error(response, 400, "validation_error", ["time"])
    await assert_error(
        await api_client.get(f"/recordings/{UNKNOWN_ID}/thumbnail.jpg"), 404, "not_found"
    )


async def test_a_signed_streams_thumbnails_need_a_token(
    api_client: TestClient, account: AccountCredentials, media: Media
) -> None:
    stream_id = await live_stream(api_client, account, media.video, playbackPolicy="signed")
    recording_id = await recording(api_client, stream_id, media.video)
    key = await new_key(api_client, account)
    token = issue_playback_token(stream_id, key["id"], key["privateKey"], 600)
    other = issue_playback_token(UNKNOWN_ID, key["id"], key["privateKey"], 600)
    for url in (f"/live/{stream_id}/thumbnail.jpg", f"/recordings/{recording_id}/thumbnail.png"):
        await assert_forbidden(await api_client.get(url))
        await assert_forbidden(await api_client.get(url, params={"token": other}))
        await assert_forbidden(await api_client.get(url, params={"width": "0"}))  # 403 first
        response = await api_client.get(url, params={"token": token})
        assert response.status == 200, await response.text()
        assert response.headers["Cache-Control"].startswith("private, max-age=")


async def test_a_recording_thumbnail_from_object_storage(
    aiohttp_client: AiohttpClient,
    app_settings: Settings,
    seaweedfs: S3Server,
    monkeypatch: pytest.MonkeyPatch,
    media: Media,
) -> None:
    client, prefix = await client_for(
        aiohttp_client, app_settings, seaweedfs, seaweedfs.endpoint, monkeypatch
    )
    account = await new_account(client)
    stream = await create_stream(client, account)
    async with client.app[DB_SESSIONMAKER]() as session, session.begin():
        row = await queries.create_recording(session, stream["id"], datetime.now(UTC))
    s3 = sync_client(seaweedfs)
    s3.put_object(Bucket=seaweedfs.bucket, Key=f"{prefix}{row.id}/r-0.ts", Body=media.video)
    playlist = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\nr-0.ts\n#EXT-X-ENDLIST\n"
    s3.put_object(Bucket=seaweedfs.bucket, Key=f"{prefix}{row.id}/index.m3u8", Body=playlist)

    response = await client.get(f"/recordings/{row.id}/thumbnail.jpg", params={"time": "1.5"})
    assert response.status == 200, await response.text()
    assert_pattern(await response.read(), (640, 360))
    response = await client.get(f"/recordings/{row.id}/thumbnail.jpg", params={"time": "2.5"})
    await assert_error(response, 400, "time_out_of_range", ["time"])


def test_thumbnail_requests_are_summed_up_in_the_access_log_like_playback(
    api_app: web.Application,
) -> None:
    routes = {r.resource.canonical for r in api_app.router.routes() if r.resource is not None}
    thumbnails = {route for route in routes if "/thumbnail." in route}
    assert len(thumbnails) == 4 and thumbnails <= set(PLAYBACK_ROUTES)


HEAD_COMPARED = (
    "Content-Type",
    "Content-Length",
    "Cache-Control",
    "Retry-After",
    "Access-Control-Allow-Origin",
)


async def assert_head_agrees(client: TestClient, url: str, **params: str) -> int:
    """``HEAD url`` answers what ``GET url`` does, without a body; HEAD is asked first, so it
    decides with nothing cached. The status."""
    head = await client.head(url, params=params)
    assert await head.read() == b""
    get = await client.get(url, params=params)
    body = await get.read()
    assert (head.status, url, params) == (get.status, url, params), body[:200]
    for name in HEAD_COMPARED:
        assert head.headers.get(name) == get.headers.get(name), (name, url, params)
    assert get.headers["Content-Length"] == str(len(body))
    return head.status


async def test_head_agrees_with_get(
    api_client: TestClient, account: AccountCredentials, media: Media
) -> None:
    client = api_client
    video = await live_stream(client, account, media.video)
    audio = await live_stream(client, account, media.audio)
    signed = await live_stream(client, account, media.video, playbackPolicy="signed")
    idle = (await create_stream(client, account))["id"]
    waiting = (await create_stream(client, account, latencyMode="standard"))["id"]
    await go_live(client, waiting)  # live, but no segment yet
    recorded = await recording(client, video, media.video)
    silent = await recording(client, audio, media.audio)
    signed_recording = await recording(client, signed, media.video)
    key = await new_key(client, account)
    token = issue_playback_token(signed, key["id"], key["privateKey"], 600)

    cases: list[tuple[str, dict[str, str], int]] = [
        (f"/live/{video}/thumbnail.jpg", {}, 200),
        (f"/live/{video}/thumbnail.png", {"width": "320"}, 200),
        (f"/live/{audio}/thumbnail.jpg", {}, 404),  # no video
        (f"/live/{audio}/thumbnail.png", {"height": "90"}, 404),
        (f"/live/{waiting}/thumbnail.jpg", {}, 503),
        (f"/live/{idle}/thumbnail.jpg", {}, 404),
        (f"/live/{UNKNOWN_ID}/thumbnail.jpg", {}, 404),
        ("/live/not-an-id/thumbnail.jpg", {}, 404),
        (f"/live/{video}/thumbnail.jpg", {"width": "15"}, 400),
        (f"/live/{idle}/thumbnail.jpg", {"height": "abc"}, 400),
        (f"/live/{signed}/thumbnail.jpg", {}, 403),
        (f"/live/{signed}/thumbnail.jpg", {"width": "0"}, 403),
        (f"/live/{signed}/thumbnail.jpg", {"token": token}, 200),
        (f"/recordings/{recorded}/thumbnail.jpg", {}, 200),
        (f"/recordings/{recorded}/thumbnail.png", {"time": "3", "height": "180"}, 200),
        (f"/recordings/{recorded}/thumbnail.jpg", {"time": "9"}, 400),
        (f"/recordings/{recorded}/thumbnail.jpg", {"time": "nan"}, 400),
        (f"/recordings/{recorded}/thumbnail.jpg", {"width": "1921"}, 400),
        (f"/recordings/{silent}/thumbnail.jpg", {}, 404),  # no video
        (f"/recordings/{UNKNOWN_ID}/thumbnail.jpg", {}, 404),
        ("/recordings/not-an-id/thumbnail.png", {}, 404),
        (f"/recordings/{signed_recording}/thumbnail.jpg", {}, 403),
        (f"/recordings/{signed_recording}/thumbnail.jpg", {"token": token}, 200),
    ]
    for url, params, status in cases:
        assert await assert_head_agrees(client, url, **params) == status, (url, params)
