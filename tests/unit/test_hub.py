"""StreamHub fan-out: bounded subscriptions, keyframe-aligned drops, cached headers."""

import asyncio

import pytest

from ingest.flv import TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO, file_header, frame_tag
from ingest.hub import MAX_SEQUENCE_HEADER_BYTES, MediaRefused, StreamHub, Tracks
from ingest.subscription import ReadEnd, Subscription

AVC_SEQ = b"\x17\x00\x00\x00\x00\x01\x64"
AAC_SEQ = b"\xaf\x00\x12\x10"
META = {"videocodecid": 7.0, "audiocodecid": 10.0}
META_BODY = b"\x02\x00\x0aonMetaData\x03\x00\x00\x09"
META_TAG = frame_tag(TAG_SCRIPT, 0, META_BODY)


def key(n: int = 100) -> bytes:
    return b"\x17\x01\x00\x00\x00" + bytes(n)


def inter(n: int = 100) -> bytes:
    return b"\x27\x01\x00\x00\x00" + bytes(n)


def started_hub(queue_bytes: int = 10_000) -> StreamHub:
    hub = StreamHub("s" * 24, queue_bytes=queue_bytes)
    hub.publish_metadata(META_BODY, META)
    hub.publish_media(TAG_VIDEO, 0, AVC_SEQ)
    hub.publish_media(TAG_AUDIO, 0, AAC_SEQ)
    return hub


async def drain(sub: Subscription) -> list[bytes] | ReadEnd:
    return await asyncio.wait_for(sub.read(), 1)


async def test_tracks_from_metadata_and_preamble() -> None:
    hub = started_hub()
    assert hub.ready.is_set()
    assert hub.tracks == Tracks(has_audio=True, has_video=True)
    sub = hub.subscribe("hls")
    batch = await drain(sub)
    assert batch[0] == file_header(has_audio=True, has_video=True)
    assert len(batch) == 4  # header, metadata, AVC and AAC sequence headers
    assert AVC_SEQ in batch[2] and AAC_SEQ in batch[3]


async def test_new_subscription_starts_at_a_keyframe() -> None:
    hub = started_hub()
    sub = hub.subscribe("late")
    await drain(sub)
    hub.publish_media(TAG_VIDEO, 33, inter())
    hub.publish_media(TAG_AUDIO, 40, b"\xaf\x01\x00")
    hub.publish_media(TAG_VIDEO, 66, key())
    hub.publish_media(TAG_AUDIO, 70, b"\xaf\x01\x00")
    batch = await drain(sub)
    assert len(batch) == 2
    assert key() in batch[0]
    assert sub.dropped_frames == 2


async def test_lagging_subscription_drops_until_next_keyframe_and_never_blocks() -> None:
    hub = started_hub(queue_bytes=1_000)
    slow = hub.subscribe("slow")
    fast = hub.subscribe("fast")
    hub.publish_media(TAG_VIDEO, 0, key(100))
    for ts in range(1, 30):
        hub.publish_media(TAG_VIDEO, ts, inter(100))
        fast_batch = await drain(fast)  # the fast reader keeps up
        assert len(fast_batch) >= 1
    assert slow.queued_bytes <= 1_000 + 200
    dropped = slow.dropped_frames
    assert dropped > 0
    hub.publish_media(TAG_VIDEO, 31, inter(100))  # still dropping: not a keyframe
    assert slow.dropped_frames == dropped + 1
    await drain(slow)  # the reader catches up
    hub.publish_media(TAG_VIDEO, 32, inter(100))
    assert slow.dropped_frames == dropped + 2
    hub.publish_media(TAG_VIDEO, 33, key(100))
    batch = await drain(slow)
    assert len(batch) == 1 and key(100) in batch[0]
    assert fast.dropped_frames == 0


async def test_sequence_header_that_finds_the_queue_full_comes_before_the_next_keyframe() -> None:
    hub = started_hub(queue_bytes=300)
    sub = hub.subscribe("s")
    await drain(sub)
    hub.publish_media(TAG_VIDEO, 0, key(250))
    hub.publish_media(TAG_VIDEO, 1, inter(250))  # does not fit: dropping until a keyframe
    hub.publish_media(TAG_VIDEO, 2, AVC_SEQ)
    assert [key(250) in tag for tag in await drain(sub)] == [True]
    hub.publish_media(TAG_VIDEO, 3, key(100))
    batch = await drain(sub)
    assert len(batch) == 2 and AVC_SEQ in batch[0] and key(100) in batch[1]


def avc_header(n: int, size: int) -> bytes:
    """A distinct AVC sequence header body of ``size`` bytes."""
    return b"\x17\x00\x00\x00\x00" + n.to_bytes(4, "big") + bytes(size - 9)


def aac_header(n: int, size: int) -> bytes:
    return b"\xaf\x00" + n.to_bytes(4, "big") + bytes(size - 6)


async def test_lagging_subscription_fed_many_headers_stays_within_its_byte_limit() -> None:
    hub = started_hub(queue_bytes=10_000)
    sub = hub.subscribe("never-reads")
    for n in range(200):  # 200 headers of 1000 bytes, both tracks, nothing read
        hub.publish_media(TAG_VIDEO, n, avc_header(n, 1000))
        hub.publish_media(TAG_AUDIO, n, aac_header(n, 1000))
        hub.publish_media(TAG_VIDEO, n, inter(500))
    assert sub.queued_bytes <= 10_000
    hub.publish_media(TAG_VIDEO, 300, key(100))
    tags = await drain(sub)
    assert sum(map(len, tags)) <= 10_000


async def test_only_the_latest_header_per_track_is_kept_for_a_lagging_reader() -> None:
    hub = started_hub(queue_bytes=1_000)
    sub = hub.subscribe("slow")
    await drain(sub)
    hub.publish_media(TAG_VIDEO, 0, key(900))  # the queue is full from here
    for n in range(5):
        hub.publish_media(TAG_VIDEO, n, avc_header(n, 100))
        hub.publish_media(TAG_AUDIO, n, aac_header(n, 50))
    await drain(sub)  # the reader catches up: only the keyframe was queued
    hub.publish_media(TAG_VIDEO, 40, key(100))
    batch = await drain(sub)
    assert batch[0].find(avc_header(4, 100)) == 11
    assert batch[1].find(aac_header(4, 50)) == 11
    assert key(100) in batch[2] and len(batch) == 3


async def test_unread_header_is_replaced_by_a_newer_one_of_its_track() -> None:
    hub = started_hub()
    sub = hub.subscribe("s")
    await drain(sub)
    hub.publish_media(TAG_VIDEO, 0, key())
    for n in range(10):  # an encoder repeating its configuration with nothing in between
        hub.publish_media(TAG_VIDEO, 1, avc_header(n, 200))
        hub.publish_media(TAG_AUDIO, 1, aac_header(n, 100))
    hub.publish_media(TAG_VIDEO, 2, inter())
    hub.publish_media(TAG_VIDEO, 3, avc_header(10, 200))  # after a frame: queued, not replaced
    batch = await drain(sub)
    assert len(batch) == 5
    assert avc_header(9, 200) in batch[1] and aac_header(9, 100) in batch[2]
    assert avc_header(10, 200) in batch[4]


async def test_header_that_waits_is_not_overtaken_by_a_later_one() -> None:
    hub = started_hub(queue_bytes=1_000)
    sub = hub.subscribe("s")
    await drain(sub)
    hub.publish_media(TAG_VIDEO, 0, key(100))
    hub.publish_media(TAG_VIDEO, 1, avc_header(1, 100))  # queued
    hub.publish_media(TAG_VIDEO, 2, avc_header(2, 900))  # too big to replace it: waits
    hub.publish_media(TAG_VIDEO, 3, avc_header(3, 100))  # replaces the waiting one
    assert len(await drain(sub)) == 2
    hub.publish_media(TAG_VIDEO, 4, key(100))
    batch = await drain(sub)
    assert avc_header(3, 100) in batch[0] and key(100) in batch[1] and len(batch) == 2


async def test_oversized_sequence_header_is_refused() -> None:
    hub = started_hub()
    sub = hub.subscribe("s")
    await drain(sub)
    for kind, body in (
        (TAG_VIDEO, avc_header(1, MAX_SEQUENCE_HEADER_BYTES + 1)),
        (TAG_AUDIO, aac_header(1, MAX_SEQUENCE_HEADER_BYTES + 1)),
    ):
        with pytest.raises(MediaRefused, match=f"of {MAX_SEQUENCE_HEADER_BYTES + 1} bytes"):
            hub.publish_media(kind, 0, body)
    with pytest.raises(MediaRefused, match="onMetaData"):
        hub.publish_metadata(bytes(MAX_SEQUENCE_HEADER_BYTES + 1), META)
    assert sub.queued_bytes == 0
    hub.publish_media(TAG_VIDEO, 0, avc_header(2, MAX_SEQUENCE_HEADER_BYTES))  # the cap itself
    late = await drain(hub.subscribe("late"))  # cached headers: the accepted ones only
    assert [len(tag) for tag in late[1:]] == [
        len(META_TAG),
        MAX_SEQUENCE_HEADER_BYTES + 15,
        len(AAC_SEQ) + 15,
    ]


async def test_audio_only_stream_without_metadata() -> None:
    hub = StreamHub("a" * 24, queue_bytes=10_000)
    hub.publish_media(TAG_AUDIO, 0, AAC_SEQ)
    for ts in range(0, 1100, 23):
        hub.publish_media(TAG_AUDIO, ts, b"\xaf\x01" + bytes(50))
    assert hub.tracks == Tracks(has_audio=True, has_video=False)
    sub = hub.subscribe("hls")
    hub.publish_media(TAG_AUDIO, 1200, b"\xaf\x01" + bytes(50))
    batch = await drain(sub)
    assert batch[0] == file_header(has_audio=True, has_video=False)
    assert len(batch) == 3  # header, AAC config, the new frame (no waiting for video)


async def test_video_only_stream_without_metadata() -> None:
    hub = StreamHub("v" * 24, queue_bytes=10_000)
    hub.publish_media(TAG_VIDEO, 0, AVC_SEQ)
    assert not hub.ready.is_set()
    hub.publish_media(TAG_VIDEO, 0, key())
    assert hub.tracks == Tracks(has_audio=False, has_video=True)


async def test_close_lets_readers_drain_then_end() -> None:
    hub = started_hub()
    sub = hub.subscribe("s")
    hub.publish_media(TAG_VIDEO, 0, key())
    hub.close()
    assert len(await drain(sub)) == 5  # header, metadata, sequence headers, the keyframe
    assert await drain(sub) is ReadEnd.ENDED
    assert await drain(sub) is ReadEnd.ENDED  # and stays ended


async def test_restart_begins_again_with_headers() -> None:
    hub = started_hub()
    sub = hub.subscribe("s")
    await drain(sub)
    hub.publish_media(TAG_VIDEO, 0, key())
    hub.restart(sub)
    batch = await drain(sub)
    assert batch[0].startswith(b"FLV") and len(batch) == 5  # headers, then the current GOP
    assert key() in batch[4]


async def test_new_subscription_starts_at_the_last_keyframe_seen() -> None:
    hub = started_hub()
    hub.publish_media(TAG_VIDEO, 0, key(10))
    hub.publish_media(TAG_AUDIO, 5, b"\xaf\x01\x01")
    hub.publish_media(TAG_VIDEO, 33, inter(10))
    sub = hub.subscribe("late")
    batch = await drain(sub)
    assert len(batch) == 4 + 3  # header, metadata, 2 sequence headers, then the GOP so far
    assert key(10) in batch[4] and inter(10) in batch[6]
    hub.publish_media(TAG_VIDEO, 66, inter(10))  # continues without waiting for a keyframe
    assert len(await drain(sub)) == 1
    assert sub.dropped_frames == 0


async def test_gop_cache_is_bounded() -> None:
    hub = started_hub(queue_bytes=1_000)
    hub.publish_media(TAG_VIDEO, 0, key(100))
    for ts in range(1, 10):
        hub.publish_media(TAG_VIDEO, ts, inter(100))  # GOP grows past half the queue bound
    sub = hub.subscribe("late")
    assert len(await drain(sub)) == 4  # no GOP replayed: it waits for the next keyframe
    hub.publish_media(TAG_VIDEO, 20, inter(100))
    assert sub.dropped_frames == 1


def test_bitrate_meter_averages_over_its_window() -> None:
    from ingest.stats import BitrateMeter

    meter = BitrateMeter(window_seconds=5)
    for second in range(10):
        meter.add(100.0 + second + 0.5, 375_000)  # 3 Mbit/s
    assert meter.kbps(109.9) == 3000.0
    assert meter.kbps(130.0) == 0.0


def tag_timestamp(tag: bytes) -> int:
    return int.from_bytes(tag[4:7], "big") | (tag[7] << 24)


async def test_reconnect_continues_timestamps_for_outputs_that_keep_running() -> None:
    hub = started_hub()
    hub.begin_publisher()
    sub = hub.subscribe("restream")
    await drain(sub)
    hub.publish_media(TAG_VIDEO, 0x00FFFFF0, key())  # first publisher, near the 24-bit edge
    hub.publish_media(TAG_VIDEO, 0x01000010, inter())
    hub.begin_publisher()  # OBS reconnected: its clock starts at 0 again
    hub.publish_media(TAG_VIDEO, 0, AVC_SEQ)
    hub.publish_media(TAG_VIDEO, 0, key())
    hub.publish_media(TAG_VIDEO, 33, inter())
    stamps = [tag_timestamp(tag) for tag in await drain(sub)]
    assert stamps == [0x00FFFFF0, 0x01000010, 0x01000038, 0x01000038, 0x01000038 + 33]


async def test_first_publisher_keeps_its_timestamps() -> None:
    hub = started_hub()
    hub.begin_publisher()
    sub = hub.subscribe("hls")
    await drain(sub)
    hub.publish_media(TAG_VIDEO, 5000, key())
    assert tag_timestamp((await drain(sub))[0]) == 5000


async def test_reconnect_drops_the_previous_publishers_gop() -> None:
    hub = started_hub()
    hub.begin_publisher()
    hub.publish_media(TAG_VIDEO, 0, key())
    hub.begin_publisher()
    sub = hub.subscribe("late")
    assert len(await drain(sub)) == 4  # headers only: the old GOP is not replayed


async def test_break_is_delivered_in_order_once() -> None:
    hub = started_hub()
    sub = hub.subscribe("hls")
    await drain(sub)
    hub.publish_media(TAG_VIDEO, 0, key())
    sub.request_break()
    hub.publish_media(TAG_VIDEO, 33, inter())
    assert len(await drain(sub)) == 1  # what came before the break
    assert await drain(sub) is ReadEnd.BREAK  # the break itself
    assert len(await drain(sub)) == 1  # then the rest
    assert sub.queued_bytes == 0


async def test_stats_from_metadata_and_media() -> None:
    hub = StreamHub("m" * 24, queue_bytes=10_000)
    hub.publish_metadata(
        b"",
        {
            "encoder": "obs-output module (libobs version 30.1.2)",
            "width": 1280.0,
            "height": 720.0,
            "framerate": 30.0,
            "videocodecid": 7.0,
            "audiocodecid": 10.0,
            "audiosamplerate": 48000.0,
            "stereo": True,
        },
    )
    hub.publish_media(TAG_AUDIO, 0, b"\xaf\x00\x11\x90")  # AAC-LC, 48 kHz, stereo
    hub.publish_media(TAG_VIDEO, 0, key())
    hub.publish_media(TAG_VIDEO, 2000, key())
    stats = hub.stats
    assert stats.encoder.startswith("obs-output")
    assert stats.video is not None and stats.audio is not None
    assert (stats.video.codec, stats.video.width, stats.video.height) == ("h264", 1280, 720)
    assert stats.video.fps == 30.0 and stats.video.keyframe_interval == 2.0
    assert (stats.audio.codec, stats.audio.sample_rate, stats.audio.channels) == ("aac", 48000, 2)


async def test_stats_of_an_audio_only_publish_without_metadata() -> None:
    hub = StreamHub("n" * 24, queue_bytes=10_000)
    hub.publish_media(TAG_AUDIO, 0, b"\xaf\x00\x12\x08")  # AAC-LC, 44.1 kHz, mono
    assert hub.stats.video is None
    assert hub.stats.audio is not None
    assert (hub.stats.audio.sample_rate, hub.stats.audio.channels) == (44100, 1)


async def test_keyframe_listeners_hear_each_video_keyframe_after_it_is_queued() -> None:
    hub = started_hub()
    sub = hub.subscribe("hls")
    await drain(sub)
    heard: list[int] = []

    def listener() -> None:
        heard.append(sub.queued_bytes)  # the keyframe is already queued when it is heard

    hub.add_keyframe_listener(listener)
    hub.publish_media(TAG_VIDEO, 33, inter())
    hub.publish_media(TAG_AUDIO, 40, b"\xaf\x01\x01")
    assert heard == []
    hub.publish_media(TAG_VIDEO, 66, key())
    assert len(heard) == 1 and heard[0] > 0
    hub.remove_keyframe_listener(listener)
    hub.publish_media(TAG_VIDEO, 99, key())
    assert len(heard) == 1
