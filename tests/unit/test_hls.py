"""The HLS output's runs: a publisher reconnect ends one ffmpeg run and begins the next in the
same attempt; the end of the publish finishes the output. The "ffmpeg" is a small executable
fixture that prints ffmpeg-style progress and reads its stdin to EOF (see tests/e2e for real
ffmpeg and real segments)."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

from config import Settings
from ingest.hub import StreamHub
from tests.polling import eventually
from workers.hls import HLSOutput
from workers.output_state import OutputState
from workers.playlist import LivePlaylist

FIXTURES = Path(__file__).parent / "fixtures"


def hls_output(tmp_path: Path) -> tuple[HLSOutput, StreamHub]:
    script = tmp_path / "ffmpeg"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {FIXTURES / 'progress.py'} advance\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    settings = Settings(data_dir=tmp_path)
    hub = StreamHub("f" * 24, queue_bytes=100_000)
    directory = tmp_path / "live"
    directory.mkdir()
    playlist = LivePlaylist(
        directory,
        list_size=settings.hls_list_size,
        segment_seconds=settings.hls_segment_seconds,
    )
    output = HLSOutput(
        settings, ffmpeg=str(script), hub=hub, playlist=playlist, session_tag="0123abcd"
    )
    return output, hub


async def test_a_reconnect_begins_a_new_run_and_the_end_of_the_publish_finishes(
    tmp_path: Path,
) -> None:
    hls, hub = hls_output(tmp_path)
    hls.start()
    try:
        await eventually(lambda: hls.supervisor.state is OutputState.LIVE)
        first = hls.supervisor.process
        assert first is not None
        hls.roll_over()  # a publisher reconnect: a new ffmpeg run, not a failed attempt
        await eventually(lambda: hls.supervisor.process is not first)
        assert first.returncode == 0  # ended by EOF, not by a signal
        status = hls.supervisor.status()
        assert (status.state, status.restarts, status.retries) == (OutputState.LIVE, 0, 0)

        hub.close()  # the publish ended: ffmpeg gets EOF, writes its last segment, and is done
        await eventually(lambda: hls.supervisor.state is not OutputState.LIVE, within=5)
        assert hls.supervisor.state.value == "finished"
    finally:
        await hls.stop(timeout=5)
    assert hls.supervisor.status().restarts == 0
    assert hls.supervisor.state.value == "finished"
