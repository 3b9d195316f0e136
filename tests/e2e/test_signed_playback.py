"""A signed stream end to end: ffmpeg publishes over RTMP, ffmpeg plays the HLS with a playback
token (following the token the playlist carries into every segment URI), and nothing plays
without one."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from api.playback_tokens import issue_playback_token
from tests.e2e.conftest import (
    LiveServer,
    Publisher,
    Sources,
    decode_ts,
    ended,
    fetch,
    push,
    wait_for_playlist,
)

pytestmark = pytest.mark.e2e


async def new_signing_key(live: LiveServer) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{live.http_url}/v1/signing-keys", headers=live.headers) as response,
    ):
        assert response.status == 201, await response.text()
        key: dict[str, Any] = await response.json()
        return key


async def ffmpeg_play(ffmpeg: str, url: str) -> tuple[int, bytes]:
    """Play ``url`` to the end with ffmpeg as an HLS client; its exit code and what it read
    (remuxed to MPEG-TS)."""
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", url]
    process = await asyncio.create_subprocess_exec(
        *argv,
        "-c",
        "copy",
        "-f",
        "mpegts",
        "pipe:1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    media, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, media


async def test_a_signed_stream_plays_in_ffmpeg_only_with_a_token(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    stream = await live_server.create_stream(latencyMode="standard", playbackPolicy="signed")
    key = await new_signing_key(live_server)
    token = issue_playback_token(stream["id"], key["id"], key["privateKey"], 600)
    signed_url = f"{stream['downstreamUrl']}?token={token}"

    publisher = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"])
    publishers.append(publisher)
    code, stderr = await publisher.finish()
    assert code == 0, stderr
    playlist = await wait_for_playlist(signed_url, ended)
    assert f".ts?token={token}" in playlist

    code, media = await ffmpeg_play(ffmpeg_exe, signed_url)
    assert code == 0
    decoded = await asyncio.to_thread(decode_ts, media)  # every segment, not a 403 skipped
    assert decoded.video_codec == "h264" and decoded.duration >= 5.0, decoded

    status, body, _ = await fetch(stream["downstreamUrl"])
    assert status == 403 and b'"forbidden"' in body
    code, media = await ffmpeg_play(ffmpeg_exe, stream["downstreamUrl"])
    assert code != 0 and media == b""
    segment = next(line for line in playlist.splitlines() if ".ts?" in line).split("?")[0]
    status, _, _ = await fetch(stream["downstreamUrl"].replace("index.m3u8", segment))
    assert status == 403
