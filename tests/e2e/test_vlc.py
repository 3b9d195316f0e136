"""VLC plays a low-latency stream: Debian's ``cvlc`` (VLC 3, whose HLS client ignores parts and
blocking reloads and reads whole fMP4 segments) reads the ``downstreamUrl`` headless for a few
seconds and remuxes what it demuxed to MPEG-TS on its stdout, which PyAV decodes.

VLC is installed from Debian (``apt-get install -y vlc-bin vlc-plugin-base``; ``.ci/run`` does);
the test fails, not skips, without it. VLC refuses to run as root, so as root it runs as
``nobody`` (``setpriv``).
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil

import av
import pytest

from tests.e2e.conftest import LiveServer, Publisher, Sources, push, wait_for_playlist
from tests.llhls_support import parse

pytestmark = pytest.mark.e2e

RUN_SECONDS = 5
"""Seconds VLC plays before it stops (``--run-time``)."""
_MODULE_ERROR = re.compile(r"^\[[0-9a-f]+\] (?!main )\S+ .*error: .*$", re.MULTILINE)
"""An error line of a VLC module other than its core (``main``: interfaces, hotkeys)."""


def vlc_argv(url: str) -> list[str]:
    cvlc = shutil.which("cvlc")
    if cvlc is None:
        pytest.fail("cvlc not found: apt-get install -y vlc-bin vlc-plugin-base (.ci/run does)")
    argv = [cvlc, "--intf", "dummy", "--no-dbus", "--aout", "dummy", "--vout", "dummy"]
    argv += ["--play-and-exit", "--run-time", str(RUN_SECONDS)]
    argv += ["--sout", "#std{access=file,mux=ts,dst=-}", url]
    if os.geteuid() == 0:
        argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv]
    return argv


def decode(data: bytes) -> tuple[dict[str, int], int]:
    """Frames decoded per stream type, and audio packets that did not decode (VLC's MPEG-TS
    muxer may cut the first one)."""
    frames, broken = {"video": 0, "audio": 0}, 0
    with av.open(io.BytesIO(data), format="mpegts") as container:
        for packet in container.demux():
            if not packet.size or packet.stream.type not in frames:
                continue
            try:
                frames[packet.stream.type] += len(packet.decode())
            except av.error.InvalidDataError:
                if packet.stream.type != "audio":
                    raise
                broken += 1
    return frames, broken


async def test_vlc_plays_a_low_latency_stream(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    stream = await live_server.create_stream(latencyMode="low")
    publishers.append(await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True))
    url = stream["downstreamUrl"]
    await wait_for_playlist(url, lambda t: sum(s.uri is not None for s in parse(t).segments) >= 2)
    process = await asyncio.create_subprocess_exec(
        *vlc_argv(url), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), RUN_SECONDS + 30)
    log = err.decode(errors="replace")
    assert process.returncode == 0, log
    assert "Changing stream format Unknown -> MP4" in log, "VLC read the fMP4 segments"
    assert _MODULE_ERROR.findall(log) == []
    frames, broken = await asyncio.to_thread(decode, out)
    # About RUN_SECONDS of 30 fps video and 48 kHz AAC (1024 samples a frame).
    assert frames["video"] >= 30 * (RUN_SECONDS - 2), frames
    assert frames["audio"] >= 47 * (RUN_SECONDS - 2) and broken <= 1, (frames, broken)
