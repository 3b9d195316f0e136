"""``kill -9`` of the service while object storage is unreachable: the segments waiting on local
disk are uploaded by the next start, which then closes the recording from the bucket.

``liverelay serve`` records a real ffmpeg publish into SeaweedFS through a relay; the relay is
cut so segments pile up in ``upload-backlog/``, the service is killed, the relay restored and the
service started again. The recording must be ``ready``, hold every segment the live playlist had
but the one being cut, and decode.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from tests.e2e.conftest import Publisher, Sources, ended, fetch, push, wait_for_playlist
from tests.e2e.outputs import decode_playlist
from tests.e2e.serve_process import Service, call, reap_orphans
from tests.e2e.serve_process import service as service
from tests.polling import eventually
from tests.s3_support import Relay, S3Server, sync_client
from workers.m3u8 import parse_media_playlist

pytestmark = pytest.mark.e2e


async def test_kill_9_while_the_store_is_unreachable_loses_no_waiting_segment(
    service: Service,
    tmp_path: Path,
    seaweedfs: S3Server,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
) -> None:
    host, port = seaweedfs.endpoint.removeprefix("http://").split(":")
    relay = Relay(host, int(port))
    await relay.open()
    prefix = f"crash-{secrets.token_hex(4)}"
    service.env.update(
        LIVERELAY_STORAGE_URL=f"s3://{seaweedfs.bucket}/{prefix}",
        LIVERELAY_S3_ENDPOINT=relay.endpoint,
        AWS_ACCESS_KEY_ID=seaweedfs.access_key,
        AWS_SECRET_ACCESS_KEY=seaweedfs.secret_key,
    )
    token = json.loads(await service.command("apikey", "create", "--name", "crash"))["token"]
    await service.start()
    stream = await call(
        service,
        token,
        "POST",
        "/v1/livestreams",
        json={"latencyMode": "standard", "name": "c", "record": True},
    )
    upstream = f"rtmp://127.0.0.1:{service.rtmp_port}/live/{stream['streamKey']}"
    publisher = await push(ffmpeg_exe, sources.av, upstream, loop=True)
    publishers.append(publisher)
    recordings = f"/v1/livestreams/{stream['id']}/recordings"

    async def stored_two_segments() -> dict | None:
        data = (await call(service, token, "GET", recordings))["data"]
        if not data:
            return None
        status, body, _ = await fetch(data[0]["recordingUrl"])  # read from the bucket
        return data[0] if status == 200 and len(parse_media_playlist(body.decode())) >= 2 else None

    recording = await eventually(stored_two_segments, 30, interval=0.2)
    backlog = tmp_path / "data" / "upload-backlog" / recording["id"]
    await relay.close()  # the store is gone: segments wait on local disk
    await eventually(lambda: len(list(backlog.glob("*.ts"))) >= 3, 30, interval=0.2)

    service.kill()  # SIGKILL: no cleanup at all
    await service.process.wait()  # type: ignore[union-attr]
    live_playlist = tmp_path / "data" / "live" / stream["id"] / "index.m3u8"
    live = [s.name for s in parse_media_playlist(live_playlist.read_text())]
    waiting = sorted(path.name for path in backlog.glob("*.ts"))
    publisher.kill()
    await publisher.process.wait()
    await reap_orphans(tmp_path)

    await relay.open()
    try:
        await service.start()
        await check_closed(service, token, recordings, seaweedfs, prefix, waiting, live)
    finally:
        await service.stop()
        await relay.close()


async def check_closed(
    service: Service,
    token: str,
    recordings: str,
    seaweedfs: S3Server,
    prefix: str,
    waiting: list[str],
    live: list[str],
) -> None:
    """The recording is closed (polled: recovery may come some seconds after start-up),
    ready, lists what waited (but the segment being listed at the kill) and what the live
    playlist had (but the segment being cut), is in the bucket, and decodes."""

    async def finalized() -> dict | None:
        [recording] = (await call(service, token, "GET", recordings))["data"]
        return recording if recording["status"] != "recording" else None

    closed = await eventually(finalized, 30, interval=0.2, message="the recording stayed open")
    assert closed["status"] == "ready" and closed["error"] is None, closed
    playlist = await wait_for_playlist(closed["recordingUrl"], ended, timeout=5)
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in playlist
    names = [s.name for s in parse_media_playlist(playlist)]
    assert len(set(waiting) - set(names)) <= 1  # at most the one being listed
    assert len(set(live) - set(names)) <= 1, (live, names)  # at most the segment being cut
    keys = sync_client(seaweedfs).list_objects_v2(
        Bucket=seaweedfs.bucket, Prefix=f"{prefix}/{closed['id']}/"
    )
    stored = {item["Key"].rsplit("/", 1)[1] for item in keys.get("Contents", [])}
    assert set(names) <= stored
    decoded = await decode_playlist(closed["recordingUrl"], playlist)
    assert (decoded.video_codec, decoded.audio_codec) == ("h264", "aac")
    assert decoded.duration >= sum(s.duration for s in parse_media_playlist(playlist)) - 1.0
