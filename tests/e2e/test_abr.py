"""Adaptive bitrate, standard mode: a 640x360 publish with a ladder gets a transcoded 240p
rendition (its 360p rung is skipped: never the source's size again), a multivariant playlist
whose attributes are what the renditions really are, and renditions cut at the same instants."""

from __future__ import annotations

import aiohttp
import pytest

from tests.e2e.abr_support import (
    avc_codec_string,
    fetch_ok,
    ffmpeg_reads_every_variant,
    parse_multivariant,
)
from tests.e2e.conftest import (
    LiveServer,
    Publisher,
    Sources,
    decode_ts,
    ended,
    has_segment,
    push,
    wait_for_playlist,
)
from tests.polling import eventually
from workers.m3u8 import parse_media_playlist

pytestmark = pytest.mark.e2e


async def current_renditions(live: LiveServer, stream_id: str) -> list[str] | None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{live.http_url}/v1/livestreams/{stream_id}", headers=live.headers) as response,
    ):
        session = (await response.json())["currentSession"]
    return session["renditions"] if session else None


async def test_a_ladder_is_played_through_a_multivariant_playlist(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    stream = await live_server.create_stream(
        latencyMode="standard", renditions=["source", "360p", "240p"]
    )
    publisher = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"])
    publishers.append(publisher)

    async def produced() -> list[str] | None:
        found = await current_renditions(live_server, stream["id"])
        return found or None

    assert await eventually(produced, 20, interval=0.1) == ["source", "240p"]
    code, stderr = await publisher.finish()
    assert code == 0, stderr
    base = stream["downstreamUrl"].rsplit("/", 1)[0]
    await wait_for_playlist(f"{base}/240p.m3u8", ended)
    await wait_for_playlist(f"{base}/source.m3u8", ended)

    variants = parse_multivariant((await fetch_ok(stream["downstreamUrl"])).decode())
    assert [v.uri for v in variants] == ["source.m3u8", "240p.m3u8"]
    cuts = []
    for variant, (width, height) in zip(variants, [(640, 360), (426, 240)], strict=True):
        playlist = (await fetch_ok(f"{base}/{variant.uri}")).decode()
        segments = parse_media_playlist(playlist)
        media = b"".join([await fetch_ok(f"{base}/{s.name}") for s in segments])
        decoded = decode_ts(media)
        assert (decoded.width, decoded.height) == (width, height)
        assert variant.attributes["RESOLUTION"] == f"{width}x{height}"
        assert variant.attributes["CODECS"] == f"{avc_codec_string(media)},mp4a.40.2"
        assert variant.attributes["FRAME-RATE"] == "30.000"
        seconds = sum(s.duration for s in segments)
        assert int(variant.attributes["AVERAGE-BANDWIDTH"]) <= int(variant.attributes["BANDWIDTH"])
        assert int(variant.attributes["BANDWIDTH"]) >= len(media) * 8 / seconds * 0.5
        assert decoded.audio_codec == "aac" and decoded.video_frames >= 150
        cuts.append([round(s.duration, 1) for s in segments])
    assert cuts[0] == cuts[1], "renditions are cut at the same keyframes"
    assert variants[1].attributes["CODECS"].startswith("avc1.4D40")  # Main, as declared

    report = await ffmpeg_reads_every_variant(ffmpeg_exe, stream["downstreamUrl"])
    assert "426x240" in report and "640x360" in report


async def test_without_a_rung_to_produce_the_url_stays_a_media_playlist(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    """Audio only: no rung; video only below every rung's height is the same rule (unit
    tested); a video-only publish with a rung gets a multivariant playlist without audio."""
    audio = await live_server.create_stream(latencyMode="standard", renditions=["source", "240p"])
    video = await live_server.create_stream(latencyMode="standard", renditions=["source", "240p"])
    for stream, source in ((audio, sources.audio_only), (video, sources.video_only)):
        publishers.append(await push(ffmpeg_exe, source, stream["upstreamUrl"], realtime=False))
    for publisher in publishers:
        code, stderr = await publisher.finish()
        assert code == 0, stderr
    playlist = await wait_for_playlist(audio["downstreamUrl"], ended)
    assert has_segment(playlist) and "#EXT-X-STREAM-INF" not in playlist
    base = video["downstreamUrl"].rsplit("/", 1)[0]
    await wait_for_playlist(f"{base}/240p.m3u8", ended)
    variants = parse_multivariant((await fetch_ok(video["downstreamUrl"])).decode())
    assert [v.uri for v in variants] == ["source.m3u8", "240p.m3u8"]
    assert all("," not in v.attributes["CODECS"] for v in variants), "no audio codec listed"
