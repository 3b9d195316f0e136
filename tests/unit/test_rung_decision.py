"""When a session's rungs are decided: a publish whose ``onMetaData`` declares video without its
picture size makes the path ready before the AVC sequence header says the size, so the decision
waits (bounded) for that header; with no header in time the session is source only, logged.
A real hub fed real FLV bodies."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from config.settings import Settings
from ingest.flv import TAG_VIDEO
from ingest.hub import StreamHub
from workers.ladder_hls import RenditionSet
from workers.llhls_output import LowLatencyOutput
from workers.playlist import LivePlaylist
from workers.rung_decision import decide_rungs

# A real 1280x720 sequence header (libx264 through ffmpeg's FLV muxer, see tests/unit/test_avc.py)
AVC_720P = b"\x17\x00\x00\x00\x00" + bytes.fromhex(
    "01f4001fffe1001a67f4001f919b280a00b76022000003000200000300781e30632c01000668ebe3c44844fff8f800"
)
META_BODY = b"\x02\x00\x0aonMetaData\x03\x00\x00\x09"
LADDER = ("source", "480p", "360p")


def hub_ready_without_size() -> StreamHub:
    hub = StreamHub("s" * 24, queue_bytes=100_000)
    hub.publish_metadata(META_BODY, {"videocodecid": 7.0, "audiocodecid": 10.0})
    assert hub.ready.is_set() and hub.stats.video is not None
    assert hub.stats.video.height is None
    return hub


async def test_the_rungs_wait_for_the_sequence_header_after_metadata_without_a_size() -> None:
    hub = hub_ready_without_size()
    asyncio.get_running_loop().call_soon(hub.publish_media, TAG_VIDEO, 0, AVC_720P)
    rungs = await asyncio.wait_for(decide_rungs(LADDER, hub, wait_seconds=30), 5)
    assert [r.name for r in rungs] == ["480p", "360p"]


async def test_without_a_sequence_header_in_time_the_session_is_source_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = hub_ready_without_size()
    with caplog.at_level(logging.WARNING, logger="workers.rung_decision"):
        rungs = await asyncio.wait_for(decide_rungs(LADDER, hub, wait_seconds=0.05), 5)
    assert rungs == ()
    assert "no video sequence header" in caplog.text and "source only" in caplog.text


async def test_a_known_size_or_no_rung_asked_for_decides_at_once() -> None:
    hub = hub_ready_without_size()
    # Only the source asked for: nothing to wait for (a wait would time out and fail here).
    assert await asyncio.wait_for(decide_rungs(("source",), hub, wait_seconds=30), 1) == ()
    hub.publish_media(TAG_VIDEO, 0, AVC_720P)
    rungs = await asyncio.wait_for(decide_rungs(LADDER, hub, wait_seconds=30), 1)
    assert [r.name for r in rungs] == ["480p", "360p"]


async def test_an_audio_only_publish_gets_no_rung_without_waiting() -> None:
    hub = StreamHub("s" * 24, queue_bytes=100_000)
    hub.publish_metadata(META_BODY, {"audiocodecid": 10.0})
    assert await asyncio.wait_for(decide_rungs(LADDER, hub, wait_seconds=30), 1) == ()


async def test_both_latency_modes_decide_their_rungs_after_the_header(tmp_path: Path) -> None:
    standard_hub, low_hub = hub_ready_without_size(), hub_ready_without_size()
    playlist = LivePlaylist(tmp_path, list_size=6, segment_seconds=2)
    standard = RenditionSet(playlist, requested=LADDER, segment_seconds=2)
    low = LowLatencyOutput(Settings(), ffmpeg="ffmpeg", hub=low_hub, renditions=LADDER)
    deciding = asyncio.gather(standard.decide(standard_hub), low._decide())
    await asyncio.sleep(0)
    assert standard.produced == () and low.renditions == (), "not decided before the header"
    standard_hub.publish_media(TAG_VIDEO, 0, AVC_720P)
    low_hub.publish_media(TAG_VIDEO, 0, AVC_720P)
    await asyncio.wait_for(deciding, 5)
    assert standard.produced == low.renditions == LADDER
    assert playlist.name == "source.m3u8"
