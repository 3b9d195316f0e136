"""Playback of a ladder's files in standard mode: each rendition's media playlist next to the
multivariant ``index.m3u8``, whitelisted names only, and a signed stream's token in every URI
of both kinds of playlist."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from api.playback_tokens import issue_playback_token
from config import Settings
from tests.api.conftest import AccountCredentials, assert_error, create_stream

MULTIVARIANT = (
    b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n"
    b"#EXT-X-STREAM-INF:BANDWIDTH=900000,AVERAGE-BANDWIDTH=800000,RESOLUTION=640x360\n"
    b"source.m3u8\n"
    b"#EXT-X-STREAM-INF:BANDWIDTH=500000,AVERAGE-BANDWIDTH=450000,RESOLUTION=426x240\n"
    b"240p.m3u8\n"
)
RUNG_PLAYLIST = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\ns-1-0-240p-0.ts\n"


def write_ladder(settings: Settings, stream_id: str) -> None:
    directory = settings.live_dir / stream_id
    directory.mkdir(parents=True)
    (directory / "index.m3u8").write_bytes(MULTIVARIANT)
    (directory / "source.m3u8").write_bytes(RUNG_PLAYLIST.replace(b"-240p", b""))
    (directory / "240p.m3u8").write_bytes(RUNG_PLAYLIST)
    (directory / "s-1-0-240p-0.ts").write_bytes(b"G" * 188)
    (directory / ".ffmpeg-s-1-0-240p.m3u8").write_bytes(b"#EXTM3U\n")


async def test_rendition_playlists_are_served_as_playlists(
    api_client: TestClient, account: AccountCredentials, app_settings: Settings
) -> None:
    stream = await create_stream(api_client, account)
    write_ladder(app_settings, stream["id"])
    base = f"/live/{stream['id']}"
    response = await api_client.get(f"{base}/index.m3u8")
    assert await response.read() == MULTIVARIANT
    response = await api_client.get(f"{base}/240p.m3u8")
    assert response.status == 200 and await response.read() == RUNG_PLAYLIST
    assert response.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert response.headers["Cache-Control"] == "no-cache"
    response = await api_client.get(f"{base}/s-1-0-240p-0.ts")
    assert response.status == 200 and response.headers["Content-Type"] == "video/mp2t"
    for name in ("720p.m3u8", ".ffmpeg-s-1-0-240p.m3u8", "Source.m3u8", "%2e%2e%2fx.m3u8"):
        response = await api_client.get(f"{base}/{name}")
        await assert_error(response, 404, "not_found")


async def test_a_signed_ladder_carries_the_token_in_every_uri(
    api_client: TestClient, account: AccountCredentials, app_settings: Settings
) -> None:
    stream = await create_stream(api_client, account, playbackPolicy="signed")
    write_ladder(app_settings, stream["id"])
    key = await (await api_client.post("/v1/signing-keys", headers=account.headers)).json()
    token = issue_playback_token(stream["id"], key["id"], key["privateKey"], 600)
    base = f"/live/{stream['id']}"
    response = await api_client.get(f"{base}/240p.m3u8")
    await assert_error(response, 403, "forbidden")
    response = await api_client.get(f"{base}/index.m3u8", params={"token": token})
    uris = [line for line in (await response.text()).splitlines() if not line.startswith("#")]
    assert uris == [f"source.m3u8?token={token}", f"240p.m3u8?token={token}"]
    response = await api_client.get(f"{base}/240p.m3u8", params={"token": token})
    assert f"s-1-0-240p-0.ts?token={token}" in await response.text()
