"""A second publisher nobody here wrote: GStreamer's rtmp2sink."""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest

from tests.e2e.conftest import (
    LiveServer,
    download_and_decode,
    ended,
    has_segment,
    wait_for_playlist,
)

pytestmark = pytest.mark.e2e


def gstreamer_or_fail() -> str:
    gst = shutil.which("gst-launch-1.0")
    if gst is None:
        message = "gst-launch-1.0 not found (apt-get install gstreamer1.0-tools + plugins)"
        if os.environ.get("CI"):
            pytest.fail(message)  # .ci/run installs it: never hide a missing client in CI
        pytest.skip(message)
    return gst


async def test_gstreamer_rtmp2sink_publish_plays(live_server: LiveServer) -> None:
    gst = gstreamer_or_fail()
    stream = await live_server.create_stream(name="gstreamer")
    pipeline = (
        "videotestsrc num-buffers=150 is-live=true ! video/x-raw,width=320,height=240,"
        "framerate=30/1 ! x264enc tune=zerolatency key-int-max=30 speed-preset=ultrafast ! "
        "h264parse ! flvmux name=m streamable=true ! "
        f"rtmp2sink location={stream['upstreamUrl']} "
        "audiotestsrc is-live=true num-buffers=240 ! audio/x-raw,rate=48000 ! avenc_aac ! "
        "aacparse ! m."
    )
    process = await asyncio.create_subprocess_exec(
        gst,
        "-q",
        *pipeline.split(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    # A viewer while it is live (a low-latency stream's ended playlist is kept for those).
    watching = asyncio.ensure_future(wait_for_playlist(stream["downstreamUrl"], has_segment))
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode(errors="replace")
    await watching
    playlist = await wait_for_playlist(stream["downstreamUrl"], ended)
    decoded = await download_and_decode(stream["downstreamUrl"], playlist)
    assert (decoded.video_codec, decoded.audio_codec) == ("h264", "aac")
    assert (decoded.width, decoded.height) == (320, 240)
    assert decoded.duration >= 4.5, decoded  # 150 frames at 30 fps: nothing lost at the start
