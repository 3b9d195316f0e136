"""The orchestrator's output set: restream targets change while live, only where they changed.

The "ffmpeg" here is a small executable fixture that prints ffmpeg-style progress and reads its
stdin to EOF, so outputs go live without a network.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from config import Settings
from ingest.authorizer import PublishGrant, RestreamTarget
from ingest.flv import TAG_AUDIO, TAG_VIDEO
from tests.polling import eventually
from workers.orchestrator import Orchestrator, StreamOutputs
from workers.supervisor import OutputState

FIXTURES = Path(__file__).parent / "fixtures"
STREAM = "5" * 24
META = {"videocodecid": 7.0, "audiocodecid": 10.0}


def fake_ffmpeg(directory: Path) -> str:
    script = directory / "ffmpeg"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {FIXTURES / 'progress.py'} advance\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def make_ready(outputs: StreamOutputs) -> None:
    hub = outputs.hub
    hub.publish_metadata(b"\x02\x00\x0aonMetaData\x03\x00\x00\x09", META)
    hub.publish_media(TAG_VIDEO, 0, b"\x17\x00\x00\x00\x00\x01\x64")
    hub.publish_media(TAG_AUDIO, 0, b"\xaf\x00\x12\x10")


def rt(target_id: str, key: str) -> RestreamTarget:
    # A public address: the output resolves names before it starts ffmpeg, and there is no DNS.
    return RestreamTarget(target_id, f"rtmp://93.184.216.34/app/{key}")


@pytest.fixture
def orchestrator(tmp_path: Path) -> Orchestrator:
    settings = Settings(data_dir=tmp_path, output_backoff_max_seconds=1)
    return Orchestrator(settings, ffmpeg=fake_ffmpeg(tmp_path))


def live_ids(outputs: StreamOutputs) -> set[str]:
    return {tid for tid, o in outputs.restreams.items() if o.status().state is OutputState.LIVE}


async def test_changing_targets_while_live_touches_only_the_changed_ones(
    orchestrator: Orchestrator,
) -> None:
    grant = PublishGrant(STREAM, restream=(rt("t1", "k1"), rt("t2", "k2")))
    outputs = await orchestrator.open(grant, "127.0.0.1:5000")
    make_ready(outputs)
    await eventually(lambda: live_ids(outputs) == {"t1", "t2"})
    kept, edited = outputs.restreams["t1"], outputs.restreams["t2"]

    changed = [rt("t1", "k1"), rt("t3", "k3"), rt("t2", "k2-new")]
    assert orchestrator.update_restream(STREAM, changed)

    assert outputs.restreams["t1"] is kept
    assert outputs.restreams["t2"] is not edited
    await eventually(lambda: live_ids(outputs) == {"t1", "t2", "t3"})
    await eventually(lambda: edited.status().state is OutputState.STOPPED)
    assert kept.status().restarts == 0
    assert outputs.hls.supervisor.status().restarts == 0
    names = [status.name for status, _ in outputs.output_statuses()]
    assert names == [f"{STREAM}/hls", *(f"{STREAM}/restream:{t}" for t in ("t1", "t3", "t2"))]

    assert orchestrator.update_restream(STREAM, [])
    await outputs.end(clean=True, reason="test")
    assert {o.status().state for o in (kept, edited)} == {OutputState.STOPPED}
    await eventually(lambda: orchestrator.get(STREAM) is None)
    assert not orchestrator.update_restream(STREAM, [rt("t1", "k1")])


async def test_targets_set_before_the_stream_is_ready_start_with_it(
    orchestrator: Orchestrator,
) -> None:
    outputs = await orchestrator.open(PublishGrant(STREAM), "127.0.0.1:5000")
    assert orchestrator.update_restream(STREAM, [rt("late", "k")])
    assert dict(outputs.restreams) == {}  # nothing starts before the hub knows the tracks
    make_ready(outputs)
    await eventually(lambda: live_ids(outputs) == {"late"})
    await outputs.end(clean=True, reason="test")
    await outputs.end(clean=True, reason="again")  # idempotent
    assert outputs.recording is None  # not a recorded stream
