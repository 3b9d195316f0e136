"""The thumbnail cache: one decode per key and interval, shared by concurrent requests, bounded,
and forgotten when a stream ends. Driven by a fake clock; the "decode" is a counted coroutine."""

from __future__ import annotations

import asyncio

import pytest

from tests.fakes import FakeClock
from tests.polling import eventually
from workers.thumbnail_cache import ThumbnailCache, ThumbnailKey
from workers.thumbnail_codec import NoVideo, Thumbnail

KEY = ThumbnailKey("60e2fe88135c9810f490f3b4", "live", "jpg", 320, None)


class CountedMaker:
    """Makes a thumbnail each call, counting calls; ``gate`` holds every call until set."""

    def __init__(self, size: int = 100) -> None:
        self.calls = 0
        self.size = size
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self) -> Thumbnail:
        self.calls += 1
        await self.gate.wait()
        return Thumbnail(bytes([self.calls]) * self.size, "image/jpeg", 320, 180)


async def test_requests_within_the_interval_cause_one_decode() -> None:
    clock = FakeClock()
    cache = ThumbnailCache(clock=clock)
    make = CountedMaker()
    first = await cache.get(KEY, make, ttl=5.0)
    for _ in range(100):
        clock.advance(0.04)  # 100 requests over 4 s
        assert await cache.get(KEY, make, ttl=5.0) == first
    assert make.calls == 1
    assert (cache.decoded, cache.from_cache) == (1, 100)

    clock.advance(1.0)  # 5 s after the decode: stale, answered while made again
    assert await cache.get(KEY, make, ttl=5.0) == first
    await eventually(lambda: make.calls == 2 and cache.in_flight == 0)
    fresh = await cache.get(KEY, make, ttl=5.0)
    assert fresh != first and make.calls == 2
    assert (cache.decoded, cache.from_cache) == (2, 102)

    clock.advance(10.0)  # more than twice the interval: too old to show, waited for
    assert await cache.get(KEY, make, ttl=5.0) not in (first, fresh)
    assert make.calls == 3


async def test_concurrent_requests_share_one_decode() -> None:
    cache = ThumbnailCache(clock=FakeClock())
    make = CountedMaker()
    make.gate.clear()
    waiting = [asyncio.ensure_future(cache.get(KEY, make, ttl=5.0)) for _ in range(50)]
    await eventually(lambda: cache.from_cache == 49, message="all requests should be waiting")
    assert make.calls == 1
    make.gate.set()
    results = await asyncio.gather(*waiting)
    assert make.calls == 1 and len(set(results)) == 1
    assert (cache.decoded, cache.from_cache) == (1, 49)


async def test_a_request_that_goes_away_does_not_cancel_the_shared_decode() -> None:
    cache = ThumbnailCache(clock=FakeClock())
    make = CountedMaker()
    make.gate.clear()
    first = asyncio.ensure_future(cache.get(KEY, make, ttl=5.0))
    second = asyncio.ensure_future(cache.get(KEY, make, ttl=5.0))
    await eventually(lambda: make.calls == 1 and cache.from_cache == 1)
    first.cancel()
    make.gate.set()
    assert (await second).data == b"\x01" * 100
    assert make.calls == 1


async def test_other_keys_decode_on_their_own() -> None:
    cache = ThumbnailCache(clock=FakeClock())
    make = CountedMaker()
    await cache.get(KEY, make, ttl=5.0)
    await cache.get(ThumbnailKey(KEY.source, "live", "jpg", 640, None), make, ttl=5.0)
    await cache.get(ThumbnailKey(KEY.source, "live", "png", 320, None), make, ttl=5.0)
    assert make.calls == 3


async def test_no_video_is_remembered_like_a_thumbnail() -> None:
    cache = ThumbnailCache(clock=FakeClock())
    calls = 0

    async def audio_only() -> Thumbnail:
        nonlocal calls
        calls += 1
        raise NoVideo("the stream has no video")

    for _ in range(3):
        with pytest.raises(NoVideo, match="no video"):
            await cache.get(KEY, audio_only, ttl=5.0)
    assert calls == 1


async def test_other_errors_are_not_kept() -> None:
    cache = ThumbnailCache(clock=FakeClock())
    calls = 0

    async def not_ready() -> Thumbnail:
        nonlocal calls
        calls += 1
        raise LookupError("no segment yet")

    for _ in range(2):
        with pytest.raises(LookupError):
            await cache.get(KEY, not_ready, ttl=5.0)
    assert calls == 2 and len(cache) == 0


async def test_the_cache_is_bounded_by_entries_and_bytes_least_recently_used_first() -> None:
    cache = ThumbnailCache(clock=FakeClock(), max_entries=3, max_bytes=250)
    keys = [ThumbnailKey(f"s{i}", "live", "jpg", None, None) for i in range(4)]
    for key in keys[:2]:
        await cache.get(key, CountedMaker(size=100), ttl=60)
    await cache.get(keys[0], CountedMaker(), ttl=60)  # used: keys[1] is now the oldest
    await cache.get(keys[2], CountedMaker(size=100), ttl=60)  # 300 bytes > 250: one goes
    assert len(cache) == 2 and cache.bytes == 200
    again = CountedMaker()
    await cache.get(keys[1], again, ttl=60)
    assert again.calls == 1  # keys[1] was evicted
    await cache.get(keys[0], again, ttl=60)
    assert again.calls == 2  # ...and then keys[0], the least recently used

    small = ThumbnailCache(clock=FakeClock(), max_entries=2)
    for key in keys:
        await small.get(key, CountedMaker(size=1), ttl=60)
    assert len(small) == 2


async def test_a_stream_that_ends_loses_its_thumbnails() -> None:
    cache = ThumbnailCache(clock=FakeClock())
    other = ThumbnailKey("0" * 24, "live", "jpg", None, None)
    make = CountedMaker()
    await cache.get(KEY, make, ttl=5.0)
    await cache.get(other, make, ttl=5.0)
    cache.forget(KEY.source)
    assert len(cache) == 1 and cache.bytes == 100
    await cache.get(KEY, make, ttl=5.0)
    await cache.get(other, make, ttl=5.0)
    assert make.calls == 3


async def test_decodes_run_in_threads_a_bounded_number_at_a_time() -> None:
    cache = ThumbnailCache(clock=FakeClock(), max_decodes=2)
    running = 0
    most = 0
    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    def work() -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=10)
        running -= 1
        return 1

    tasks = [asyncio.ensure_future(cache.run_decode(work)) for _ in range(5)]
    await eventually(lambda: running == 2, message="two decodes should be running")
    release.set()
    assert await asyncio.gather(*tasks) == [1] * 5
    assert most == 2
