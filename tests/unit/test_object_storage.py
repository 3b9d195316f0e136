"""Recordings in object storage, against real S3 servers: SeaweedFS (signatures checked) and
moto's server. Both take conditional playlist writes (``If-None-Match: *``, ``If-Match``) and
answer a stale one with 412, which the tests below rely on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from config import SettingsError
from tests.fakes import MemoryStore
from tests.s3_support import (
    PLAYLIST,
    SEGMENT_BYTES,
    Bucket,
    Relay,
    S3Server,
    SeaweedFS,
    StorageFactory,
    segment,
)
from workers.m3u8 import Segment
from workers.object_storage import S3RecordingStorage
from workers.recording import RecordingOutput, RecordingSummary, render_recording
from workers.recording_recovery import finalize_stored
from workers.s3_options import S3Options
from workers.storage import RecordingFailed


async def test_segments_and_playlist_round_trip(
    bucket: Bucket, storage: S3RecordingStorage, tmp_path: Path
) -> None:
    sources = [segment(tmp_path / "live", f"seg_{i:05d}.ts") for i in range(3)]
    for source in sources:
        assert await storage.add_segment("r1", source) == SEGMENT_BYTES
    await storage.write_playlist("r1", PLAYLIST)
    await storage.flush("r1")
    for source in sources:
        assert bucket.stored(storage, "r1", source.name) == source.read_bytes()
    assert bucket.stored(storage, "r1", "index.m3u8").decode() == PLAYLIST
    assert storage.waiting_bytes == 0
    assert list((storage.backlog_dir / "r1").glob("*.ts")) == []  # only the ETag is kept


async def test_inspect_reports_the_playlist_and_the_segment_sizes(
    storage: S3RecordingStorage, tmp_path: Path
) -> None:
    assert (await storage.inspect("nothing-here")).playlist is None
    await storage.add_segment("r1", segment(tmp_path, "seg_00000.ts", 100))
    await storage.add_segment("r1", segment(tmp_path, "seg_00001.ts", 200))
    await storage.write_playlist("r1", PLAYLIST)
    await storage.flush("r1")
    found = await storage.inspect("r1")
    assert found.playlist == PLAYLIST
    assert found.segment_sizes == {"seg_00000.ts": 100, "seg_00001.ts": 200}
    assert found.modified_at is not None


async def test_remove_segments_deletes_only_the_named_ones(
    bucket: Bucket, storage: S3RecordingStorage, tmp_path: Path
) -> None:
    for i in range(3):
        await storage.add_segment("r1", segment(tmp_path, f"seg_{i:05d}.ts"))
    await storage.flush("r1")
    await storage.remove_segments("r1", ["seg_00000.ts", "seg_00002.ts"])
    prefix = f"{storage.options.prefix}r1/"
    assert bucket.keys(prefix) == [f"{prefix}seg_00001.ts"]


async def test_delete_removes_every_object_of_the_recording_across_pages(
    bucket: Bucket, make_storage: StorageFactory
) -> None:
    """Listed and deleted 3 keys at a time (the servers' limit is 1000), so the listing takes
    several pages and the deletion several requests; the recording ``r10`` shares the first
    characters of ``r1`` and is left alone."""
    storage = make_storage(page_size=3)
    await storage.open()
    prefix = storage.options.prefix
    names = [f"{prefix}r1/seg_{i:05d}.ts" for i in range(10)] + [f"{prefix}r1/index.m3u8"]
    for key in [*names, f"{prefix}r10/seg_00000.ts"]:
        bucket.client.put_object(Bucket=bucket.name, Key=key, Body=b"x")
    assert len(bucket.keys(f"{prefix}r1/")) == 11
    await storage.delete("r1")
    assert bucket.keys(f"{prefix}r1/") == []
    assert bucket.keys(f"{prefix}r10/") == [f"{prefix}r10/seg_00000.ts"]
    await storage.delete("r1")  # nothing left: no error


async def test_a_stale_playlist_write_is_refused_and_fails_only_that_writer(
    bucket: Bucket, make_storage: StorageFactory, tmp_path: Path
) -> None:
    """Two nodes write the same recording's playlist: the one whose ETag is stale gets 412 and
    its recording fails; what the other wrote stays."""
    first, second = make_storage(node="a"), make_storage(node="b")
    await first.open()
    await second.open()
    await first.write_playlist("r1", PLAYLIST)
    await first.flush("r1")
    await second.inspect("r1")  # second now holds the ETag of first's playlist
    newer = PLAYLIST + "#EXTINF:2.000,\nseg_00001.ts\n"
    await first.write_playlist("r1", newer)
    await first.flush("r1")

    await second.write_playlist("r1", PLAYLIST + "#EXT-X-ENDLIST\n")
    with pytest.raises(RecordingFailed, match="changed by another writer"):
        await second.flush("r1")
    with pytest.raises(RecordingFailed):
        await second.add_segment("r1", segment(tmp_path, "seg_00002.ts"))
    assert bucket.stored(first, "r1", "index.m3u8").decode() == newer

    await first.write_playlist("r1", newer + "#EXT-X-ENDLIST\n")  # first goes on
    await first.flush("r1")
    assert bucket.stored(first, "r1", "index.m3u8").decode().endswith("#EXT-X-ENDLIST\n")


async def test_a_writer_that_lost_a_recording_continues_it_after_reading_it_again(
    bucket: Bucket, make_storage: StorageFactory, tmp_path: Path
) -> None:
    """A node whose write was refused (another node took the recording over) may own the
    recording again later (the stream came back): reading it again starts from what is
    stored, not from the refused state."""
    first, second = make_storage(node="a"), make_storage(node="b")
    await first.open()
    await second.open()
    await first.write_playlist("r1", PLAYLIST)
    await first.flush("r1")
    await second.inspect("r1")
    await second.write_playlist("r1", PLAYLIST + "#EXTINF:2.000,\nseg_00001.ts\n")
    await second.flush("r1")
    await first.write_playlist("r1", PLAYLIST + "#EXT-X-ENDLIST\n")
    with pytest.raises(RecordingFailed, match="another writer"):
        await first.flush("r1")

    stored = await first.inspect("r1")  # the stream came back to the first node
    assert stored.playlist is not None and stored.playlist.endswith("seg_00001.ts\n")
    await first.add_segment("r1", segment(tmp_path, "seg_00002.ts"))
    again = stored.playlist + "#EXTINF:2.000,\nseg_00002.ts\n"
    await first.write_playlist("r1", again)
    await first.flush("r1")
    assert bucket.stored(first, "r1", "index.m3u8").decode() == again


async def test_a_first_write_does_not_replace_a_playlist_another_node_wrote(
    bucket: Bucket, make_storage: StorageFactory
) -> None:
    first, second = make_storage(node="a"), make_storage(node="b")
    await first.open()
    await second.open()
    await first.write_playlist("r1", PLAYLIST)
    await first.flush("r1")
    await second.write_playlist("r1", "#EXTM3U\n")
    with pytest.raises(RecordingFailed, match="another writer"):
        await second.flush("r1")
    assert bucket.stored(first, "r1", "index.m3u8").decode() == PLAYLIST


async def test_a_presigned_url_fetches_the_segment_over_plain_http(
    bucket: Bucket, storage: S3RecordingStorage, tmp_path: Path
) -> None:
    source = segment(tmp_path, "seg_00000.ts")
    await storage.add_segment("r1", source)
    await storage.flush("r1")
    url = await storage.presigned_url("r1", "seg_00000.ts", expires_in=60)
    assert "X-Amz-Signature=" in url  # SigV4, which every region takes
    async with aiohttp.ClientSession() as http, http.get(url) as answer:
        assert answer.status == 200
        assert await answer.read() == source.read_bytes()


async def test_seaweedfs_refuses_unsigned_requests(seaweedfs: S3Server) -> None:
    """The fixture's server checks signatures, so the presigned URL above proves its signing."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{seaweedfs.endpoint}/{seaweedfs.bucket}/any") as answer:
            assert answer.status == 403


async def test_segments_wait_while_storage_is_unreachable_and_upload_when_it_is_back(
    s3_server: S3Server, bucket: Bucket, make_storage: StorageFactory, tmp_path: Path
) -> None:
    host, port = s3_server.endpoint.removeprefix("http://").split(":")
    relay = Relay(host, int(port))  # closed: connections are refused
    storage = make_storage(endpoint=relay.endpoint)
    await storage.open()
    sources = [segment(tmp_path / "live", f"seg_{i:05d}.ts") for i in range(3)]
    for source in sources:
        assert await storage.add_segment("r1", source) == SEGMENT_BYTES
    await storage.write_playlist("r1", PLAYLIST)
    assert storage.waiting_bytes == 3 * SEGMENT_BYTES
    for source in sources:
        source.unlink()  # the live window moved on: the backlog keeps its own link

    await relay.open()
    try:
        await asyncio.wait_for(storage.flush("r1"), 30)
    finally:
        await relay.close()
    assert storage.waiting_bytes == 0
    assert len(bucket.stored(storage, "r1", "seg_00002.ts")) == SEGMENT_BYTES
    assert bucket.stored(storage, "r1", "index.m3u8").decode() == PLAYLIST


async def test_past_the_backlog_bound_the_recording_fails_and_nothing_else_does(
    make_storage: StorageFactory, tmp_path: Path
) -> None:
    relay = Relay("127.0.0.1", 9)  # never opened: the endpoint refuses every connection
    storage = make_storage(endpoint=relay.endpoint, backlog_bytes=int(2.5 * SEGMENT_BYTES))
    await storage.open()
    await storage.add_segment("r1", segment(tmp_path, "seg_00000.ts"))
    await storage.add_segment("r1", segment(tmp_path, "seg_00001.ts"))
    with pytest.raises(RecordingFailed, match="LIVERELAY_UPLOAD_BACKLOG_MB"):
        await storage.add_segment("r1", segment(tmp_path, "seg_00002.ts"))
    assert storage.waiting_bytes == 0
    assert not (storage.backlog_dir / "r1").exists()
    with pytest.raises(RecordingFailed):
        await storage.write_playlist("r1", PLAYLIST)
    # Another recording on the same storage still takes segments.
    assert await storage.add_segment("r2", segment(tmp_path, "seg_00003.ts")) == SEGMENT_BYTES


async def test_a_recording_over_unreachable_storage_ends_failed_with_the_reason(
    make_storage: StorageFactory, tmp_path: Path
) -> None:
    relay = Relay("127.0.0.1", 9)
    storage = make_storage(endpoint=relay.endpoint, backlog_bytes=3 * SEGMENT_BYTES)
    await storage.open()
    store = MemoryStore()
    output = RecordingOutput(
        "a" * 24, store=store, storage=storage, segment_seconds=2, started_at=1000.0
    )
    output.start()
    for i in range(5):
        name = f"seg_{i:05d}.ts"
        output.on_segment(segment(tmp_path / "live", name), Segment(name, 2.0))
    await output.wait_idle()
    summary = await output.close()
    assert summary.status == "failed"
    assert summary.error is not None and "LIVERELAY_UPLOAD_BACKLOG_MB" in summary.error
    assert store.rows[summary.recording_id].status == "failed"
    assert summary.segments == 3
    assert storage.waiting_bytes == 0


async def test_a_refused_first_write_of_our_own_text_is_not_a_conflict(
    bucket: Bucket, storage: S3RecordingStorage
) -> None:
    """The first write reached the server but its answer was lost, so the retry's
    ``If-None-Match: *`` gets 412: the stored text is ours, and the writer goes on with its
    ETag (the next write is conditional on it and succeeds)."""
    key = f"{storage.options.prefix}r1/index.m3u8"
    bucket.client.put_object(Bucket=bucket.name, Key=key, Body=PLAYLIST.encode())
    await storage.write_playlist("r1", PLAYLIST)
    await storage.flush("r1")
    closed = PLAYLIST + "#EXT-X-ENDLIST\n"
    await storage.write_playlist("r1", closed)
    await storage.flush("r1")
    assert bucket.stored(storage, "r1", "index.m3u8").decode() == closed


async def test_a_recording_left_open_is_finalized_from_the_bucket_on_another_start(
    bucket: Bucket, make_storage: StorageFactory, tmp_path: Path
) -> None:
    """The first node stored three segments but listed two when it stopped; the next start
    (a new storage) closes the playlist from the bucket and removes the unlisted segment."""
    before, after = make_storage(node="a"), make_storage(node="b")
    await before.open()
    for i in range(3):
        await before.add_segment("r1", segment(tmp_path, f"seg_{i:05d}.ts"))
    listed = [Segment("seg_00000.ts", 2.0), Segment("seg_00001.ts", 2.0)]
    await before.write_playlist("r1", render_recording(listed, target=2, ended=False))
    await before.flush("r1")
    await before.close()

    await after.open()
    unfinished = RecordingSummary("r1", "a" * 24, "recording", started_at=1000.0)
    summary = await finalize_stored(unfinished, after)
    await after.flush("r1")
    assert (summary.status, summary.segments, summary.bytes) == ("ready", 2, 2 * SEGMENT_BYTES)
    prefix = f"{after.options.prefix}r1/"
    assert sorted(bucket.keys(prefix)) == [
        f"{prefix}index.m3u8",
        f"{prefix}seg_00000.ts",
        f"{prefix}seg_00001.ts",
    ]
    assert bucket.stored(after, "r1", "index.m3u8").decode().endswith("#EXT-X-ENDLIST\n")


async def test_withdraw_deletes_at_once_and_says_whether_there_was_anything(
    bucket: Bucket, storage: S3RecordingStorage, tmp_path: Path
) -> None:
    await storage.add_segment("r1", segment(tmp_path, "seg_00000.ts"))
    await storage.flush("r1")
    assert await storage.withdraw("r1") is True
    await storage.empty_trash()
    assert bucket.keys(f"{storage.options.prefix}r1/") == []
    assert await storage.withdraw("r1") is None


def test_a_seaweedfs_that_cannot_start_fails_with_its_log(tmp_path: Path) -> None:
    server = SeaweedFS(tmp_path, extra_args=("-no-such-option",))
    with pytest.raises(RuntimeError, match="exited") as error:
        server.start()
    assert "no-such-option" in str(error.value)
    assert server.process is None


async def test_object_storage_without_credentials_is_refused_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask an instance service
    storage = S3RecordingStorage(S3Options(bucket="recordings"), tmp_path / "backlog")
    with pytest.raises(SettingsError, match="AWS_ACCESS_KEY_ID"):
        await storage.open()


@pytest.mark.parametrize("rid", ["", "a/b", "..", ".hidden"])
async def test_ids_that_could_reach_other_objects_are_refused(
    storage: S3RecordingStorage, tmp_path: Path, rid: str
) -> None:
    with pytest.raises(ValueError, match="invalid recording id"):
        await storage.delete(rid)
    with pytest.raises(ValueError, match="invalid recording id"):
        await storage.add_segment(rid, segment(tmp_path, "seg_00000.ts"))
    with pytest.raises(ValueError, match="invalid recording id"):
        await storage.presigned_url(rid, "seg_00000.ts")
