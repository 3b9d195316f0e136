"""OBS-style reconnects: a dropped publisher may come back inside the reconnect window and the
session goes on (one playlist with a discontinuity, one recording); a clean stop or the window
running out ends it."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.conftest import (
    LiveServer,
    Publisher,
    Sources,
    download_and_decode,
    ended,
    fetch,
    push,
    segment_count,
    wait_for_playlist,
)
from tests.polling import eventually
from workers.m3u8 import parse_media_playlist

pytestmark = pytest.mark.e2e


async def test_abrupt_drop_then_reconnect_continues_the_session(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    stream = await live_server.create_stream(latencyMode="standard", record=True)
    playlist_url = stream["downstreamUrl"]
    first = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True)
    publishers.append(first)
    await wait_for_playlist(playlist_url, lambda t: segment_count(t) >= 3)
    first.kill()  # a network drop: no unpublish
    await first.process.wait()
    stream_url = f"{live_server.http_url}/v1/livestreams/{stream['id']}"

    async def waiting_for_the_publisher() -> bool:
        _, body, _ = await fetch_json_with(live_server, stream_url)
        return bool(body["currentSession"] and body["currentSession"]["reconnecting"])

    await eventually(waiting_for_the_publisher, 10, message="the drop was never noticed")
    status, body, _ = await fetch(playlist_url)
    assert status == 200 and not ended(body.decode()), "the window keeps the playlist open"
    before = segment_count(body.decode())

    second = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"])  # 6 s, then FCUnpublish
    publishers.append(second)
    code, stderr = await second.finish()
    assert code == 0, stderr
    playlist = await wait_for_playlist(playlist_url, ended, timeout=20)  # clean stop: at once
    segments = parse_media_playlist(playlist)
    assert "#EXT-X-MEDIA-SEQUENCE:0" in playlist, "one playlist: media sequence kept"
    assert len(segments) >= before + 4
    assert [s.discontinuity for s in segments].count(True) == 1
    breaks = [i for i, s in enumerate(segments) if s.discontinuity]
    assert before - 1 <= breaks[0] <= before + 1
    decoded = await download_and_decode(playlist_url, playlist)  # a viewer across the break
    assert decoded.video_codec == "h264" and decoded.audio_codec == "aac"
    # Each ffmpeg run starts its own MPEG-TS clock (hence the discontinuity): count frames.
    assert decoded.video_frames >= (before - 1 + 5) * 30 * 0.9, decoded

    recordings_url = f"{live_server.http_url}/v1/livestreams/{stream['id']}/recordings"

    async def first_recording_ready() -> dict | None:
        _, body, _ = await fetch_json_with(live_server, recordings_url)
        return body if body["data"] and body["data"][0]["status"] == "ready" else None

    body = await eventually(first_recording_ready, 10, interval=0.1)
    assert len(body["data"]) == 1, "one session, one recording"
    recording = body["data"][0]
    status, text, _ = await fetch(recording["recordingUrl"])
    assert status == 200 and "#EXT-X-DISCONTINUITY" in text.decode()
    rec = await download_and_decode(recording["recordingUrl"], text.decode())
    assert rec.video_frames >= decoded.video_frames - 30, (rec, decoded)


async def test_window_running_out_ends_the_session(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    stream = await live_server.create_stream(latencyMode="standard")
    await live_server.set_reconnect_window(stream["id"], 2)
    publisher = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True)
    publishers.append(publisher)
    await wait_for_playlist(stream["downstreamUrl"], lambda t: segment_count(t) >= 2)
    publisher.kill()
    await publisher.process.wait()
    playlist = await wait_for_playlist(stream["downstreamUrl"], ended, timeout=20)
    assert "#EXT-X-DISCONTINUITY" not in playlist


async def test_no_window_ends_at_once(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    stream = await live_server.create_stream(latencyMode="standard")
    await live_server.set_reconnect_window(stream["id"], 0)
    publisher = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True)
    publishers.append(publisher)
    await wait_for_playlist(stream["downstreamUrl"], lambda t: segment_count(t) >= 2)
    publisher.kill()
    await publisher.process.wait()
    await wait_for_playlist(stream["downstreamUrl"], ended, timeout=10)


async def test_same_key_replaces_a_stale_publisher(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    """OBS reconnects before the server noticed the old connection died: the new publish is
    accepted (not refused as "already publishing") and continues the session."""
    stream = await live_server.create_stream(latencyMode="standard")
    stale = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True)
    publishers.append(stale)
    await wait_for_playlist(stream["downstreamUrl"], lambda t: segment_count(t) >= 2)
    fresh = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"])
    publishers.append(fresh)
    code, _ = await asyncio.wait_for(stale.finish(), 20)  # the server closed the stale one
    assert code != 0 or stale.process.returncode is not None
    code, stderr = await fresh.finish()
    assert code == 0, stderr
    playlist = await wait_for_playlist(stream["downstreamUrl"], ended, timeout=20)
    assert "#EXT-X-DISCONTINUITY" in playlist
    decoded = await download_and_decode(stream["downstreamUrl"], playlist)
    assert decoded.video_frames >= 6 * 30 * 0.9, decoded


async def fetch_json_with(live: LiveServer, url: str) -> tuple[int, dict, dict]:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(url, headers=live.headers) as response:
        return response.status, await response.json(), dict(response.headers)
