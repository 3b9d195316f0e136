"""A low-latency stream in Chromium's other players: two that do not use its parts, hls.js with
``lowLatencyMode: false`` (it reloads the playlist and fetches whole segments, as for any live
playlist) and Chromium's own HLS player (a ``<video>`` whose ``src`` is the playlist); and AV1
published over enhanced RTMP, played by hls.js through the multivariant playlist.

Each player must present frames (``requestVideoFrameCallback``) over at least
:data:`PLAYED_SECONDS` of media time with no fatal error.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest
from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tests.browser.conftest import WAIT_MS
from tests.browser.test_low_latency_player import serve_page
from tests.e2e.conftest import LiveServer, Publisher, push, wait_for_playlist
from tests.e2e.conftest import publishers as publishers  # the fixture, shared
from tests.fmp4_source import AV1, VIDEO
from tests.llhls_support import parse

PLAYED_SECONDS = 2.5
"""Media time a player must present frames over."""
FRAMES = 60
"""Frames a player must present (2 s at 30 fps)."""

_WATCH = """
const video = document.getElementById("video");
window.fatal = null;
window.frames = 0;
window.first = null;
window.last = null;
video.addEventListener("error", () => {{
  window.fatal = "media error " + (video.error && video.error.code + " " + video.error.message);
}});
function onFrame(_, meta) {{
  window.frames += 1;
  if (window.first === null) window.first = meta.mediaTime;
  window.last = meta.mediaTime;
  video.requestVideoFrameCallback(onFrame);
}}
video.requestVideoFrameCallback(onFrame);
"""

HLS_JS_PAGE = (
    """<!doctype html>
<html><head><meta charset="utf-8"><title>hls.js</title></head><body>
<video id="video" muted autoplay playsinline width="640" height="360"></video>
<script src="{hls_js}"></script>
<script>"""
    + _WATCH
    + """
window.codec = null;
const hls = new Hls({{ lowLatencyMode: {low_latency} }});
hls.on(Hls.Events.ERROR, (_, data) => {{
  if (data.fatal) window.fatal = data.type + ": " + data.details;
}});
hls.on(Hls.Events.BUFFER_CODECS, (_, data) => {{
  const track = data.video || data.audiovideo;  // one SourceBuffer for muxed fMP4
  if (track) window.codec = track.codec;
}});
window.listed = null;
hls.on(Hls.Events.MANIFEST_PARSED, (_, data) => {{
  window.listed = data.levels.map((level) => level.attrs.CODECS || null);
  video.play();
}});
hls.loadSource({playlist!r});
hls.attachMedia(video);
</script></body></html>
"""
)

NATIVE_PAGE = (
    """<!doctype html>
<html><head><meta charset="utf-8"><title>native</title></head><body>
<video id="video" muted autoplay playsinline width="640" height="360"></video>
<script>"""
    + _WATCH
    + """
window.canPlay = video.canPlayType("application/vnd.apple.mpegurl");
video.src = {playlist!r};
video.play().catch((error) => {{ window.fatal = "play(): " + error; }});
</script></body></html>
"""
)


async def played(page: Page, html: str) -> dict:
    """Open ``html`` in ``page`` and wait until its player has presented :data:`FRAMES` frames
    over :data:`PLAYED_SECONDS` of media time, or failed: what it saw."""
    async for page_url in serve_page(html):
        await page.goto(page_url)
        with contextlib.suppress(PlaywrightTimeout):  # what it saw says what went wrong
            await page.wait_for_function(
                f"window.fatal !== null || (window.frames >= {FRAMES} && "
                f"window.last - window.first >= {PLAYED_SECONDS})",
                timeout=WAIT_MS + 10_000,
            )
        seen: dict = await page.evaluate(
            "({fatal: window.fatal, frames: window.frames, first: window.first, "
            "last: window.last, codec: window.codec, canPlay: window.canPlay, "
            "listed: window.listed, currentTime: video.currentTime, readyState: video.readyState})"
        )
    return seen


async def start_low(live: LiveServer, source: Path, publishers: list[Publisher]) -> str:
    """A low-latency stream published (looped) from ``source``, once its playlist lists two
    complete segments: its ``downstreamUrl``."""
    stream = await live.create_stream(latencyMode="low")
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    publisher = await push(ffmpeg, source, stream["upstreamUrl"], loop=True)
    publishers.append(publisher)
    url: str = stream["downstreamUrl"]
    await wait_for_playlist(url, lambda t: sum(s.uri is not None for s in parse(t).segments) >= 2)
    return url


async def test_hls_js_without_low_latency_mode_and_chromium_itself_play_a_low_stream(
    page: Page, console_server: LiveServer, camera: Path, publishers: list[Publisher]
) -> None:
    url = await start_low(console_server, camera, publishers)
    hls_js = f"{console_server.http_url}/console/vendor/hls.min.js"
    # One after the other: Chromium does not present frames of a page in the background.
    by_hls_js = await played(
        page, HLS_JS_PAGE.format(hls_js=hls_js, low_latency="false", playlist=url)
    )
    natively = await played(page, NATIVE_PAGE.format(playlist=url))
    assert by_hls_js["fatal"] is None, by_hls_js
    assert "avc1." in by_hls_js["codec"], by_hls_js  # sniffed from the EXT-X-MAP
    # Chromium plays HLS itself (it answers "maybe" for the playlist's media type).
    assert natively["canPlay"] in ("maybe", "probably"), natively
    assert natively["fatal"] is None, natively
    for seen in (by_hls_js, natively):
        assert seen["frames"] >= FRAMES, seen
        assert seen["last"] - seen["first"] >= PLAYED_SECONDS, seen


@pytest.fixture(scope="module")
def av1_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five seconds of AV1 (SVT-AV1, one keyframe a second) in FLV, as an enhanced RTMP
    publisher sends it."""
    path = tmp_path_factory.mktemp("av1") / "av1.flv"
    quiet = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    encode = [*quiet, *VIDEO, "-t", "5", *AV1]
    subprocess.run([*encode, "-f", "flv", str(path)], check=True, timeout=120)
    return path


async def test_hls_js_plays_av1_published_over_enhanced_rtmp(
    page: Page, console_server: LiveServer, av1_source: Path, publishers: list[Publisher]
) -> None:
    """Through the multivariant playlist: hls.js keeps only variants whose ``CODECS`` the
    browser's MediaSource supports, so wrong ones would leave it nothing to play."""
    url = await start_low(console_server, av1_source, publishers)
    multivariant = url.replace("/index.m3u8", "/multivariant.m3u8")
    hls_js = f"{console_server.http_url}/console/vendor/hls.min.js"
    html = HLS_JS_PAGE.format(hls_js=hls_js, low_latency="true", playlist=multivariant)
    seen = await played(page, html)
    assert seen["fatal"] is None, seen
    (listed,) = seen["listed"]
    assert listed.startswith("av01.0.") and "," not in listed, seen  # video only
    assert seen["codec"].startswith("av01.0."), seen
    assert seen["frames"] >= FRAMES, seen
    assert seen["last"] - seen["first"] >= PLAYED_SECONDS, seen
