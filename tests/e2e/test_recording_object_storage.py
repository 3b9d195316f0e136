"""A real ffmpeg publish recorded into SeaweedFS: the recording is uploaded while live, played
back through the app (playlist served, segments redirected to presigned URLs), decoded with
PyAV, and deleted with every object it had."""

from __future__ import annotations

import secrets
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.conftest import Sources, ended, push, segment_count, serving, wait_for_playlist
from tests.e2e.outputs import api, decode_playlist, wait_for_api
from tests.s3_support import S3Server, object_keys, storage_on

pytestmark = pytest.mark.e2e


async def test_a_recording_goes_to_object_storage_and_plays_back_from_it(
    tmp_path: Path,
    sqlite_url: str,
    seaweedfs: S3Server,
    ffmpeg_exe: str,
    sources: Sources,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = f"e2e-{secrets.token_hex(4)}/"
    storage = storage_on(seaweedfs, prefix, monkeypatch)
    async with serving(tmp_path, sqlite_url, **storage) as live:
        stream = await live.create_stream(latencyMode="standard", record=True)
        path = f"/v1/livestreams/{stream['id']}"
        publisher = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"])
        code, stderr = await publisher.finish()
        assert code == 0, stderr

        body = await wait_for_api(
            live, f"{path}/recordings", lambda b: b["data"] and b["data"][0]["status"] == "ready"
        )
        [recording] = body["data"]
        playlist = await wait_for_playlist(recording["recordingUrl"], ended)
        assert "#EXT-X-PLAYLIST-TYPE:VOD" in playlist
        for url in (recording["recordingUrl"], stream["recordingUrl"]):
            decoded = await decode_playlist(url, await wait_for_playlist(url, ended))
            assert (decoded.video_codec, decoded.audio_codec) == ("h264", "aac")
            assert decoded.duration >= 4.0, decoded

        # Stored in the bucket, not on local disk; segments are redirects to signed URLs.
        keys = object_keys(seaweedfs, f"{prefix}{recording['id']}/")
        assert f"{prefix}{recording['id']}/index.m3u8" in keys
        assert sum(key.endswith(".ts") for key in keys) == segment_count(playlist)
        assert not (tmp_path / "recordings" / recording["id"]).exists()
        first = next(line for line in playlist.splitlines() if line.endswith(".ts"))
        segment_url = recording["recordingUrl"].rsplit("/", 1)[0] + "/" + first
        async with (
            aiohttp.ClientSession() as http,
            http.get(segment_url, allow_redirects=False) as answer,
        ):
            assert answer.status == 302
            assert answer.headers["Location"].startswith(seaweedfs.endpoint)
            assert "X-Amz-Signature=" in answer.headers["Location"]

        await api(live, "DELETE", f"{path}/recordings/{recording['id']}")
        assert object_keys(seaweedfs, f"{prefix}{recording['id']}/") == []
