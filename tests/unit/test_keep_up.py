"""Judging whether a ladder's ffmpeg keeps up, from its reported speeds."""

from __future__ import annotations

from workers.keep_up import KeepUpWatch, ProgressBlocks, parse_speed


def test_speeds_are_read_as_ffmpeg_writes_them() -> None:
    assert parse_speed("0.985x") == 0.985
    assert parse_speed(" 1.02x") == 1.02
    assert parse_speed("N/A") is None
    assert parse_speed(None) is None
    assert parse_speed("fast") is None
    assert parse_speed("-1x") is None


def test_a_run_slow_for_long_enough_falls_behind_once() -> None:
    watch = KeepUpWatch(0.0, slow_seconds=10, grace_seconds=8)
    assert [watch.observe(0.5, t) for t in range(8)] == [False] * 8, "not judged in the grace"
    assert not watch.slow
    results = [watch.observe(0.9, t) for t in range(8, 20)]
    assert results == [False] * 10 + [True, False], "said once, 10 s after it turned slow"
    assert watch.slow and watch.fell_behind and watch.speed == 0.9


def test_a_speed_back_above_the_line_starts_the_count_again() -> None:
    watch = KeepUpWatch(0.0, slow_seconds=10, grace_seconds=0)
    assert not any(watch.observe(0.9 if t % 9 else 1.0, t) for t in range(40))
    assert not watch.fell_behind
    assert not watch.observe(None, 41), "a block without speed says nothing"


def test_progress_blocks_from_any_chunking() -> None:
    text = b"frame=10\nspeed=0.95x\nprogress=continue\nframe=40\nspeed=1.01x\nprogress=end\n"
    for size in (1, 7, len(text)):
        reader = ProgressBlocks()
        blocks = [b for i in range(0, len(text), size) for b in reader.feed(text[i : i + size])]
        assert blocks == [
            {"frame": "10", "speed": "0.95x", "progress": "continue"},
            {"frame": "40", "speed": "1.01x", "progress": "end"},
        ]


def test_an_endless_progress_line_is_not_kept() -> None:
    reader = ProgressBlocks()
    assert reader.feed(b"x" * 100_000) == []
    assert reader.feed(b"\nspeed=1x\nprogress=end\n") == [{"speed": "1x", "progress": "end"}]
