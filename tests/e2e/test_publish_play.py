"""The whole path: create a stream over HTTP, push RTMP with ffmpeg, play the HLS."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    LiveServer,
    Publisher,
    Sources,
    download_and_decode,
    e2e_settings,
    ended,
    fetch,
    free_port,
    has_segment,
    push,
    start_live_server,
    wait_for_playlist,
)

pytestmark = pytest.mark.e2e


async def publish_and_play(
    live: LiveServer, ffmpeg: str, source: Path, publishers: list[Publisher]
) -> tuple[dict, str, float]:
    stream = await live.create_stream()
    publisher = await push(ffmpeg, source, stream["upstreamUrl"])
    publishers.append(publisher)
    await wait_for_playlist(stream["downstreamUrl"], has_segment)
    first_segment_after = time.monotonic() - publisher.started_at
    code, stderr = await publisher.finish()
    assert code == 0, stderr
    playlist = await wait_for_playlist(stream["downstreamUrl"], ended)
    return stream, playlist, first_segment_after


async def test_push_then_play_audio_video(
    database_url: str,
    tmp_path: Path,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
) -> None:
    port = free_port()
    server, live = await start_live_server(e2e_settings(tmp_path, database_url, port), port)
    try:
        stream, playlist, first_after = await publish_and_play(
            live, ffmpeg_exe, sources.av, publishers
        )
        # The first segment (1 s) must appear within a segment plus a couple of seconds.
        assert first_after < 6, f"first segment after {first_after:.1f} s"
        assert stream["streamKey"] not in stream["downstreamUrl"]
        assert stream["upstreamUrl"].endswith(f"/live/{stream['streamKey']}")
        decoded = await download_and_decode(stream["downstreamUrl"], playlist)
        assert (decoded.video_codec, decoded.audio_codec) == ("h264", "aac")
        assert (decoded.width, decoded.height) == (640, 360)
        assert 5.0 <= decoded.duration <= 6.6, decoded
        assert decoded.video_frames >= 5 * 30, decoded
        assert decoded.audio_frames > 200, decoded
    finally:
        await server.close()


async def test_audio_only_publish_has_only_audio(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    stream, playlist, _ = await publish_and_play(
        live_server, ffmpeg_exe, sources.audio_only, publishers
    )
    decoded = await download_and_decode(stream["downstreamUrl"], playlist)
    assert decoded.video_codec is None
    assert decoded.audio_codec == "aac"
    assert decoded.duration >= 4.0


async def test_video_only_publish_has_only_video(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    stream, playlist, _ = await publish_and_play(
        live_server, ffmpeg_exe, sources.video_only, publishers
    )
    decoded = await download_and_decode(stream["downstreamUrl"], playlist)
    assert decoded.audio_codec is None
    assert decoded.video_codec == "h264"
    assert decoded.video_frames >= 4 * 30


async def test_unknown_stream_key_is_refused(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    url = f"rtmp://127.0.0.1:{live_server.rtmp_port}/live/not-a-key"
    publisher = await push(ffmpeg_exe, sources.av, url, realtime=False)
    publishers.append(publisher)
    code, _ = await publisher.finish(timeout=30)
    assert code != 0
    assert not (live_server.settings.live_dir).exists() or not any(
        live_server.settings.live_dir.iterdir()
    )


async def test_unknown_application_is_refused(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    stream = await live_server.create_stream()
    url = f"rtmp://127.0.0.1:{live_server.rtmp_port}/other/{stream['streamKey']}"
    publisher = await push(ffmpeg_exe, sources.av, url, realtime=False)
    publishers.append(publisher)
    code, _ = await publisher.finish(timeout=30)
    assert code != 0
    status, _, _ = await fetch(stream["downstreamUrl"])
    assert status == 404


async def test_playlist_is_404_before_publish(live_server: LiveServer) -> None:
    stream = await live_server.create_stream()
    status, _, headers = await fetch(stream["downstreamUrl"])
    assert status == 404
    assert headers["Content-Type"].startswith("application/json")


async def test_publisher_that_vanishes_ends_the_playlist(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    stream = await live_server.create_stream(latencyMode="standard")
    await live_server.set_reconnect_window(stream["id"], 0)  # no window: the end is at once
    publisher = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True)
    publishers.append(publisher)
    await wait_for_playlist(stream["downstreamUrl"], lambda t: len(t.split(".ts")) > 2)
    publisher.kill()  # SIGKILL: no unpublish, the TCP connection just closes
    await publisher.process.wait()
    playlist = await wait_for_playlist(stream["downstreamUrl"], ended, timeout=20)
    decoded = await download_and_decode(stream["downstreamUrl"], playlist)
    assert decoded.video_codec == "h264" and decoded.video_frames > 30


async def test_garbage_on_the_rtmp_port_does_not_disturb_a_live_stream(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    stream = await live_server.create_stream()
    publisher = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"])
    publishers.append(publisher)
    await wait_for_playlist(stream["downstreamUrl"], has_segment)
    for garbage in (b"GET / HTTP/1.1\r\n\r\n", b"\x03" + bytes(1536) + b"\xff" * 5000):
        reader, writer = await asyncio.open_connection("127.0.0.1", live_server.rtmp_port)
        writer.write(garbage)
        await writer.drain()
        # The server closes the connection: reading reaches EOF instead of hanging.
        await asyncio.wait_for(reader.read(), 10)
        writer.close()
    code, stderr = await publisher.finish()
    assert code == 0, stderr
    playlist = await wait_for_playlist(stream["downstreamUrl"], ended)
    decoded = await download_and_decode(stream["downstreamUrl"], playlist)
    assert decoded.duration >= 5.0


async def test_two_streams_at_once(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    first = await live_server.create_stream(name="one")
    second = await live_server.create_stream(name="two")
    for stream in (first, second):
        publishers.append(await push(ffmpeg_exe, sources.av, stream["upstreamUrl"]))
    # Viewers while live (a low-latency stream's ended playlist is kept for those).
    await asyncio.gather(
        *(wait_for_playlist(s["downstreamUrl"], has_segment) for s in (first, second))
    )
    results = await asyncio.gather(*(p.finish() for p in publishers))
    assert [code for code, _ in results] == [0, 0]
    for stream in (first, second):
        playlist = await wait_for_playlist(stream["downstreamUrl"], ended)
        decoded = await download_and_decode(stream["downstreamUrl"], playlist)
        assert decoded.duration >= 5.0
