"""``liverelay apikey delete`` against a running server, on both databases: the CLI runs in its
own event loop (as its own process would) on the server's database; the server disconnects the
account's live publisher within seconds and withdraws and removes its recordings."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import jwt
import pytest

from api import cli
from api.keys import PATHS
from tests.e2e.conftest import (
    Publisher,
    Sources,
    e2e_settings,
    fetch,
    free_port,
    push,
    start_live_server,
)
from tests.polling import eventually

pytestmark = pytest.mark.e2e


def _recorded_segments(recordings: Path) -> list[Path]:
    """MPEG-TS or fMP4 segments, whatever the stream's latency mode."""
    found = [*recordings.glob("*/*.ts"), *recordings.glob("*/*.m4s")]
    return [p for p in found if not p.parent.name.startswith(".")]


async def test_deleting_an_api_key_disconnects_its_publishers_and_removes_recordings(
    tmp_path: Path,
    database_url: str,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
) -> None:
    port = free_port()
    settings = e2e_settings(tmp_path, database_url, port)
    server, live = await start_live_server(settings, port)
    try:
        apikey = jwt.decode(live.token, options={"verify_signature": False})["apikey"]
        stream = await live.create_stream(record=True)
        publisher = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True)
        publishers.append(publisher)
        await eventually(lambda: bool(_recorded_segments(settings.recordings_dir)), within=30)
        [segment] = _recorded_segments(settings.recordings_dir)[:1]
        recording_url = f"{live.http_url}/recordings/{segment.parent.name}/{segment.name}"
        assert (await fetch(recording_url))[0] == 200

        namespace = argparse.Namespace(apikey=apikey)
        assert await asyncio.to_thread(cli.apikey_delete, settings, namespace) == 0

        await eventually(lambda: live.app[PATHS].get(stream["id"]) is None, within=10)
        await eventually(lambda: publisher.process.returncode is not None, within=20)
        await eventually(lambda: not _recorded_segments(settings.recordings_dir), within=10)
        assert (await fetch(recording_url))[0] == 404
    finally:
        await server.close()
