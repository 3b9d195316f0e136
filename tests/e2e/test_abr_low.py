"""Adaptive bitrate, low-latency mode: a 640x360 publish with a ladder gets a 240p rendition of
its own parts and playlist from the same one ffmpeg (on its own pipe), rendition reports in
every media playlist, and a multivariant playlist whose CODECS and RESOLUTION are what each
rendition's fMP4 really holds."""

from __future__ import annotations

import asyncio
import io

import av
import pytest

from tests.e2e.abr_support import fetch_ok, parse_multivariant
from tests.e2e.conftest import LiveServer, Publisher, Sources, push, wait_for_playlist
from tests.llhls_support import check_conformance, parse
from workers.fmp4 import FragmentReader, InitSegment

pytestmark = pytest.mark.e2e


def _complete(text: str) -> int:
    return sum(1 for seg in parse(text).segments if seg.uri is not None)


def _picture(data: bytes) -> tuple[int, int, int]:
    """Width, height and decoded video frames of an fMP4 init segment plus segments."""
    with av.open(io.BytesIO(data), format="mp4") as container:
        video = container.streams.video[0]
        frames = sum(len(p.decode()) for p in container.demux(video) if p.size)
        return video.codec_context.width, video.codec_context.height, frames


async def test_a_low_latency_ladder_has_a_playlist_per_rendition(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    stream = await live_server.create_stream(
        latencyMode="low", renditions=["source", "480p", "240p"]
    )
    publishers.append(await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True))
    base = stream["downstreamUrl"].rsplit("/", 1)[0]
    rung = await wait_for_playlist(f"{base}/240p.m3u8", lambda t: _complete(t) >= 3)
    source = await wait_for_playlist(f"{base}/source.m3u8", lambda t: _complete(t) >= 3)
    for text, other in ((rung, "source.m3u8"), (source, "240p.m3u8")):
        check_conformance(text)
        assert f'#EXT-X-RENDITION-REPORT:URI="{other}",LAST-MSN=' in text
        assert "480p" not in text, "a rung at the source's height is not produced"

    variants = parse_multivariant((await fetch_ok(stream["downstreamUrl"])).decode())
    assert [v.uri for v in variants] == ["source.m3u8", "240p.m3u8"]
    for variant, (width, height) in zip(variants, [(640, 360), (426, 240)], strict=True):
        playlist = parse((await fetch_ok(f"{base}/{variant.uri}")).decode())
        complete = [s for s in playlist.segments if s.uri is not None]
        init = await fetch_ok(f"{base}/{complete[0].map}")
        media = init + b"".join([await fetch_ok(f"{base}/{s.uri}") for s in complete])
        (parsed,) = [e for e in FragmentReader().feed(init) if isinstance(e, InitSegment)]
        assert variant.attributes["CODECS"] == parsed.codecs
        assert variant.attributes["RESOLUTION"] == f"{width}x{height}"
        assert await asyncio.to_thread(_picture, media) >= (width, height, 30)
    assert variants[1].attributes["CODECS"].lower().startswith("avc1.4d40")
    assert variants[1].attributes["CODECS"].endswith(",mp4a.40.2")
