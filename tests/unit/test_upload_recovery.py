"""What object storage keeps across a crash and an outage, against real S3 servers: a backlog
left on disk is uploaded by the next start before the recording is finalized, and a recording's
final state follows the upload of its closed playlist."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes import MemoryStore
from tests.polling import eventually
from tests.s3_support import SEGMENT_BYTES, Bucket, Relay, S3Server, StorageFactory, segment
from workers.m3u8 import Segment
from workers.recording import RecordingOutput, RecordingSummary, render_recording
from workers.recording_recovery import finalize_stored

STREAM = "a" * 24


def relay_to(server: S3Server) -> Relay:
    host, port = server.endpoint.removeprefix("http://").split(":")
    return Relay(host, int(port))  # closed until opened: connections are refused


async def test_a_backlog_left_by_a_stop_is_uploaded_before_the_next_start_finalizes(
    s3_server: S3Server, bucket: Bucket, make_storage: StorageFactory, tmp_path: Path
) -> None:
    """The store was unreachable: three segments and the playlist listing them waited in the
    backlog when the node stopped (as after ``kill -9``: nothing more is written at stop). The
    next start, on the same backlog directory, uploads them; finalization then finds them in
    the bucket and closes the recording with all three."""
    before = make_storage(endpoint=relay_to(s3_server).endpoint)
    await before.open()
    listed = []
    for i in range(3):
        name = f"seg_{i:05d}.ts"
        await before.add_segment("r1", segment(tmp_path / "live", name))
        listed.append(Segment(name, 2.0))
        await before.write_playlist("r1", render_recording(listed, target=2, ended=False))
    await before.close()
    assert len(list((before.backlog_dir / "r1").glob("*.ts"))) == 3

    after = make_storage()  # same node, so the same backlog directory
    await after.open()
    unfinished = RecordingSummary("r1", STREAM, "recording", started_at=1000.0)
    summary = await finalize_stored(unfinished, after)
    await after.flush("r1")
    assert (summary.status, summary.segments, summary.bytes) == ("ready", 3, 3 * SEGMENT_BYTES)
    prefix = f"{after.options.prefix}r1/"
    assert sorted(bucket.keys(prefix)) == [
        f"{prefix}index.m3u8",
        *(f"{prefix}{s.name}" for s in listed),
    ]
    stored = bucket.stored(after, "r1", "index.m3u8").decode()
    assert stored.endswith("#EXT-X-ENDLIST\n") and "seg_00002.ts" in stored
    assert after.waiting_bytes == 0
    assert not (after.backlog_dir / "r1").exists()


async def test_a_backlog_of_fmp4_segments_and_their_init_is_uploaded_and_kept(
    s3_server: S3Server, bucket: Bucket, make_storage: StorageFactory, tmp_path: Path
) -> None:
    """As above for a low-latency recording: the initialization segment and the ``.m4s``
    segments waiting in the backlog are uploaded by the next start, and finalization keeps
    the initialization segment the playlist's ``EXT-X-MAP`` names."""
    before = make_storage(endpoint=relay_to(s3_server).endpoint)
    await before.open()
    await before.add_segment("r2", segment(tmp_path / "live", "t-init0.mp4"))
    listed = []
    for i in range(3):
        name = f"t-{i}.m4s"
        await before.add_segment("r2", segment(tmp_path / "live", name))
        listed.append(Segment(name, 2.0, init="t-init0.mp4"))
        await before.write_playlist("r2", render_recording(listed, target=2, ended=False))
    await before.close()

    after = make_storage()
    await after.open()
    unfinished = RecordingSummary("r2", STREAM, "recording", started_at=1000.0)
    summary = await finalize_stored(unfinished, after)
    await after.flush("r2")
    assert (summary.status, summary.segments, summary.bytes) == ("ready", 3, 4 * SEGMENT_BYTES)
    prefix = f"{after.options.prefix}r2/"
    names = ["index.m3u8", "t-0.m4s", "t-1.m4s", "t-2.m4s", "t-init0.mp4"]
    assert sorted(bucket.keys(prefix)) == [f"{prefix}{name}" for name in names]
    stored = bucket.stored(after, "r2", "index.m3u8").decode()
    assert '#EXT-X-MAP:URI="t-init0.mp4"' in stored and stored.endswith("#EXT-X-ENDLIST\n")


async def test_a_backlog_whose_playlist_was_stored_before_the_stop_is_not_a_conflict(
    s3_server: S3Server, bucket: Bucket, make_storage: StorageFactory, tmp_path: Path
) -> None:
    """The first segments and their playlist were stored; then the store went away and more
    waited. The next start's playlist write is conditional on the stored one it recognises as
    this recording's own earlier state, not a conflict."""
    relay = relay_to(s3_server)
    await relay.open()
    before = make_storage(endpoint=relay.endpoint)
    await before.open()
    listed = [Segment("seg_00000.ts", 2.0)]
    await before.add_segment("r1", segment(tmp_path / "live", "seg_00000.ts"))
    await before.write_playlist("r1", render_recording(listed, target=2, ended=False))
    await before.flush("r1")
    await relay.close()
    listed.append(Segment("seg_00001.ts", 2.0))
    await before.add_segment("r1", segment(tmp_path / "live", "seg_00001.ts"))
    await before.write_playlist("r1", render_recording(listed, target=2, ended=False))
    await before.close()

    after = make_storage()
    await after.open()
    unfinished = RecordingSummary("r1", STREAM, "recording", started_at=1000.0)
    summary = await finalize_stored(unfinished, after)
    await after.flush("r1")
    assert (summary.status, summary.segments) == ("ready", 2)
    assert "seg_00001.ts" in bucket.stored(after, "r1", "index.m3u8").decode()


async def test_a_recording_is_ready_only_once_its_closed_playlist_is_stored(
    s3_server: S3Server, bucket: Bucket, make_storage: StorageFactory, tmp_path: Path
) -> None:
    """The session ends while the store is unreachable: the recording is not reported
    ``ready`` then; it is once the store is back and the closed playlist is in the bucket."""
    relay = relay_to(s3_server)
    storage = make_storage(endpoint=relay.endpoint)
    await storage.open()
    store = MemoryStore()
    output = RecordingOutput(
        STREAM,
        store=store,
        storage=storage,
        segment_seconds=2,
        started_at=1000.0,
        final_wait=0.1,
    )
    output.start()
    for i in range(2):
        name = f"seg_{i:05d}.ts"
        output.on_segment(segment(tmp_path / "live", name), Segment(name, 2.0))
    await output.wait_idle()
    summary = await output.close()
    assert summary.status == "recording"
    assert store.rows[summary.recording_id].status == "recording"

    await relay.open()
    try:
        await eventually(lambda: store.rows[summary.recording_id].status == "ready", within=30)
    finally:
        await relay.close()
    stored = bucket.stored(storage, summary.recording_id, "index.m3u8").decode()
    assert stored.endswith("#EXT-X-ENDLIST\n")
    assert store.rows[summary.recording_id].segments == 2


async def test_a_conflicting_final_write_fails_the_recording_with_the_reason(
    bucket: Bucket, make_storage: StorageFactory, tmp_path: Path
) -> None:
    storage = make_storage()
    await storage.open()
    store = MemoryStore()
    output = RecordingOutput(
        STREAM, store=store, storage=storage, segment_seconds=2, started_at=1000.0
    )
    output.start()
    output.on_segment(segment(tmp_path / "live", "seg_00000.ts"), Segment("seg_00000.ts", 2.0))
    await output.wait_idle()
    assert output.recording_id is not None
    await storage.flush(output.recording_id)
    key = f"{storage.options.prefix}{output.recording_id}/index.m3u8"
    bucket.client.put_object(Bucket=bucket.name, Key=key, Body=b"#EXTM3U\n")  # another writer
    summary = await output.close()
    assert summary.status == "failed"
    assert summary.error is not None and "another writer" in summary.error
    assert store.rows[summary.recording_id].status == "failed"


@pytest.mark.parametrize("s3_server", ["seaweedfs"], indirect=True)
async def test_backlog_counters(
    s3_server: S3Server, make_storage: StorageFactory, tmp_path: Path
) -> None:
    storage = make_storage(endpoint=relay_to(s3_server).endpoint)
    await storage.open()
    await storage.add_segment("r1", segment(tmp_path, "seg_00000.ts"))
    await storage.add_segment("r1", segment(tmp_path, "seg_00001.ts"))
    assert (storage.waiting_bytes, storage.waiting_segments) == (2 * SEGMENT_BYTES, 2)
    await eventually(lambda: storage.upload_failures > 0, within=10)
