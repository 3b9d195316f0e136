"""A low-latency stream in a real player: published with ffmpeg over RTMP, played by hls.js in
its low-latency mode in headless Chromium, and measured from feeding a frame to displaying it.

The measure: for every frame Chromium presents (``requestVideoFrameCallback``), the browser's
clock minus ``hls.playingDate``, the wall-clock time hls.js derives from the playlist's
``EXT-X-PROGRAM-DATE-TIME``, which the server stamps with the time the media arrived. The
publisher encodes live at the speed of a camera, so the time a frame arrived is the time it was
fed (plus its encoding); the test checks that the first segment's date is the publisher's start.
Publisher, server and browser share one clock (loopback).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import imageio_ffmpeg
from aiohttp import web
from playwright.async_api import Page

from tests.browser.conftest import WAIT_MS
from tests.e2e.conftest import LiveServer, Publisher, fetch, wait_for_playlist
from tests.llhls_support import parse

LATENCY_BOUND_MS = 2000
"""The generous bound the median must stay under (about 0.9 s on an idle machine)."""
WARM_UP_FRAMES = 90
"""Frames left out of the measure while playback settles (3 s at 30 fps)."""
MEASURED_FRAMES = 180
"""Frames measured after the warm-up (6 s at 30 fps)."""

PLAYER_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>low-latency player</title></head>
<body style="margin:0;background:#000">
<video id="video" muted autoplay playsinline width="640" height="360"></video>
<script src="{hls_js}"></script>
<script>
const video = document.getElementById("video");
window.samples = [];
window.fatal = null;
const hls = new Hls({{ lowLatencyMode: true }});
hls.on(Hls.Events.ERROR, (_, data) => {{
  if (data.fatal) window.fatal = data.type + ": " + data.details;
}});
hls.on(Hls.Events.MANIFEST_PARSED, () => video.play());
function onFrame() {{
  const date = hls.playingDate;
  if (date) window.samples.push([Date.now() - date.getTime(), video.currentTime]);
  video.requestVideoFrameCallback(onFrame);
}}
video.requestVideoFrameCallback(onFrame);
hls.loadSource({playlist!r});
hls.attachMedia(video);
</script></body></html>
"""


async def publish_like_a_camera(url: str) -> Publisher:
    """ffmpeg encoding a test pattern and a tone live, paced by the wall clock from the first
    frame (the ``realtime`` filters), pushed over RTMP. ``-re`` on a file is not used: ffmpeg
    then reads about half a second ahead, which would date the media later than it was fed."""
    video = "testsrc2=size=640x360:rate=30,realtime"
    audio = "sine=frequency=440:sample_rate=48000,arealtime"
    argv = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "warning", "-nostdin"]
    argv += ["-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio]
    argv += ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30"]
    argv += ["-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "flv", url]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    return Publisher(process, time.monotonic())


async def serve_page(html: str) -> AsyncIterator[str]:
    """A page of its own on loopback (not the console's, whose CSP forbids inline script)."""

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def test_hls_js_plays_a_low_latency_stream_within_two_seconds(
    page: Page, console_server: LiveServer, tmp_path: Path
) -> None:
    server = console_server
    stream = await server.create_stream(latencyMode="low")
    assert stream["latencyMode"] == "low"
    fed_from = time.time()
    publisher = await publish_like_a_camera(stream["upstreamUrl"])
    try:
        url = stream["downstreamUrl"]
        text = await wait_for_playlist(url, lambda t: "#EXT-X-PART:" in t)
        status, _, _ = await fetch(url)
        assert status == 200
        first = parse(text).segments[0]
        # EXT-X-PROGRAM-DATE-TIME is when the first frame came in: after the publisher
        # started, and within its start-up (ffmpeg, RTMP handshake) of it.
        assert first.date_time is not None
        assert fed_from - 0.05 <= first.date_time <= fed_from + 3

        html = PLAYER_PAGE.format(
            hls_js=f"{server.http_url}/console/vendor/hls.min.js", playlist=url
        )
        async for page_url in serve_page(html):
            await page.goto(page_url)
            await page.wait_for_function(
                "window.fatal !== null || window.samples.length >= "
                f"{WARM_UP_FRAMES + MEASURED_FRAMES}",
                timeout=WAIT_MS + 10_000,
            )
            assert await page.evaluate("window.fatal") is None
            samples = await page.evaluate("window.samples")
            await page.screenshot(path=tmp_path / "low-latency-player.png")
    finally:
        publisher.kill()
        await publisher.process.wait()

    measured = samples[WARM_UP_FRAMES:]
    latencies = [latency for latency, _ in measured]
    times = [current for _, current in measured]
    assert times[-1] - times[0] >= 3, "currentTime advances while playing"
    median = statistics.median(latencies)
    assert 0 < median < LATENCY_BOUND_MS, (
        f"median feed-to-display latency {median:.0f} ms "
        f"(min {min(latencies):.0f}, max {max(latencies):.0f})"
    )
    assert (tmp_path / "low-latency-player.png").stat().st_size > 0
