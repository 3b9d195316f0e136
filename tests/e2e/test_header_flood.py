"""A publisher that floods its stream with fake sequence headers, while one of the stream's
restream targets accepts the connection and never reads: the node's memory stays bounded, the
publisher is closed (headers over the cap) or its frames dropped (headers under it), and another
stream on the same node keeps playing.

The server runs in this process, so its memory is this process's resident set (``VmRSS``).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from api.keys import PATHS, RTMP_SERVER
from ingest.hub import MAX_SEQUENCE_HEADER_BYTES
from ingest.subscription import Subscription
from tests.e2e.conftest import (
    LiveServer,
    Publisher,
    Sources,
    has_segment,
    push,
    segment_count,
    serving,
    wait_for_playlist,
)
from tests.e2e.outputs import StalledIngest, stalled_ingest, target
from tests.polling import eventually
from tests.protocol.helpers import AUDIO, VIDEO
from tests.rtmp_client import RawPublisher

pytestmark = pytest.mark.e2e

MB = 1024 * 1024
HUB_QUEUE_BYTES = 8 * MB
"""The default ``LIVERELAY_HUB_QUEUE_BYTES``."""
RSS_BUDGET = 50 * MB


@pytest.fixture
async def node(tmp_path: Path, sqlite_url: str) -> AsyncIterator[LiveServer]:
    """The service with loopback restream targets allowed. The stall timeout is long so the
    stalled target's ffmpeg is not restarted (which would empty its queue) during a test."""
    async with serving(
        tmp_path,
        sqlite_url,
        allow_private_targets=True,
        output_stall_seconds=60.0,
        hub_queue_bytes=HUB_QUEUE_BYTES,
    ) as live:
        yield live


def rss_bytes() -> int:
    """This process's resident set size, from ``/proc/self/status``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def flv_tags(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(tag type, timestamp, body) of every tag of an FLV file."""
    data = path.read_bytes()
    pos = 13  # FLV header and PreviousTagSize0
    while pos + 11 <= len(data):
        kind, size = data[pos], int.from_bytes(data[pos + 1 : pos + 4], "big")
        timestamp = int.from_bytes(data[pos + 4 : pos + 7], "big") | data[pos + 7] << 24
        yield kind, timestamp, data[pos + 11 : pos + 11 + size]
        pos += 11 + size + 4


START_MS = 2000
"""Media an encoder sends before the flood: enough for the outputs' ffmpeg to probe it and
open their outputs."""


def encoder_start(source: Path) -> list[tuple[int, int, bytes]]:
    """The first :data:`START_MS` of an encoder's audio and video (headers first)."""
    return [t for t in flv_tags(source) if t[0] in (AUDIO, VIDEO) and t[1] <= START_MS]


def fake_avc_header(n: int, size: int) -> bytes:
    """``0x17 0x00``: all it takes to be taken for an AVC sequence header."""
    return b"\x17\x00\x00\x00\x00" + struct.pack(">I", n) + bytes(size - 9)


INTER_FRAME = b"\x27\x01\x00\x00\x00" + bytes(200)


async def attack_setup(
    live: LiveServer, stalled: StalledIngest, source: Path
) -> tuple[RawPublisher, Subscription]:
    """Publish a stream restreamed to ``stalled`` with a raw client that starts like an encoder;
    return it once the restream's ffmpeg is connected to the target that never reads."""
    stream = await live.create_stream(restream=[target(stalled.port, "stalled-key-5c1e")])
    attacker, codes = await RawPublisher.start(live.rtmp_port, stream["streamKey"])
    assert codes == ["NetStream.Publish.Start"]
    for kind, timestamp, body in encoder_start(source):
        assert await attacker.send(kind, timestamp, body)
    paths = live.app[PATHS]

    def restream_subscription() -> Subscription | None:
        path = paths.get(stream["id"])
        restreams = list(path.outputs.restreams.values()) if path else []
        return restreams[0].subscription if restreams else None

    await eventually(lambda: restream_subscription() is not None, within=15)
    await eventually(lambda: bool(stalled.connections), within=15)
    subscription = restream_subscription()
    assert subscription is not None
    return attacker, subscription


async def playing_stream(
    live: LiveServer, ffmpeg: str, sources: Sources, publishers: list[Publisher]
) -> tuple[str, int]:
    """Another stream on the node, published by ffmpeg: its playlist URL and segment count."""
    stream = await live.create_stream()
    publishers.append(await push(ffmpeg, sources.av, stream["upstreamUrl"], loop=True))
    playlist = await wait_for_playlist(stream["downstreamUrl"], has_segment)
    return stream["downstreamUrl"], segment_count(playlist)


async def keeps_playing(url: str, seen: int, publisher: Publisher) -> int:
    """Wait for two more segments of the other stream; its publisher is still on."""
    playlist = await wait_for_playlist(url, lambda text: segment_count(text) >= seen + 2)
    assert publisher.process.returncode is None
    return segment_count(playlist)


async def test_oversized_fake_headers_close_the_publisher(
    node: LiveServer,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    url, seen = await playing_stream(node, ffmpeg_exe, sources, publishers)
    async with stalled_ingest() as stalled:
        attacker, restream = await attack_setup(node, stalled, sources.av)
        baseline = rss_bytes()
        sent = 0
        for n in range(200):  # 200 MiB of "headers" at most
            if not await attacker.send(VIDEO, START_MS + n, fake_avc_header(n, MB)):
                break
            sent += 1
        growth = rss_bytes() - baseline
        assert growth < RSS_BUDGET, f"RSS grew by {growth / MB:.0f} MB after {sent} headers"
        assert await attacker.closed_by_server()
        attacker.close()
        assert node.app[RTMP_SERVER].rejected == {"protocol_error": 1}
        assert f"video sequence header of {MB} bytes is over the 65536-byte limit" in caplog.text
        assert restream.queued_bytes <= HUB_QUEUE_BYTES
        seen = await keeps_playing(url, seen, publishers[0])
    await keeps_playing(url, seen, publishers[0])


async def test_fake_headers_under_the_cap_stay_within_the_queue_bound(
    node: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    url, seen = await playing_stream(node, ffmpeg_exe, sources, publishers)
    header_size = MAX_SEQUENCE_HEADER_BYTES - 4096  # 60 KiB: accepted
    async with stalled_ingest() as stalled:
        attacker, restream = await attack_setup(node, stalled, sources.av)
        baseline = rss_bytes()
        for n in range(400):  # 24 MiB of headers, each followed by a frame
            assert await attacker.send(VIDEO, START_MS + n, fake_avc_header(n, header_size))
            assert await attacker.send(VIDEO, START_MS + n, INTER_FRAME)
        growth = rss_bytes() - baseline
        assert restream.queued_bytes <= HUB_QUEUE_BYTES, f"{restream.queued_bytes} bytes queued"
        assert growth < RSS_BUDGET, f"RSS grew by {growth / MB:.0f} MB"
        assert restream.dropped_frames > 0
        assert node.app[RTMP_SERVER].rejected == {}  # not closed: its frames were dropped
        seen = await keeps_playing(url, seen, publishers[0])
        attacker.close()
    await keeps_playing(url, seen, publishers[0])
