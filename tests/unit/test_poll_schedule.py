"""When the HLS output looks at ffmpeg's playlist (workers.hls.PollSchedule), on a fake clock."""

from __future__ import annotations

from workers.hls import (
    AFTER_KEYFRAME_POLL_SECONDS,
    AFTER_KEYFRAME_WINDOW_SECONDS,
    FIRST_SEGMENT_POLL_SECONDS,
    POLL_SECONDS,
    PollSchedule,
)


def test_polls_fast_until_the_first_segment_then_at_the_slow_pace() -> None:
    schedule = PollSchedule(2.0, now=0.0)
    assert schedule.looked(0.05, found=False) == FIRST_SEGMENT_POLL_SECONDS
    assert schedule.looked(1.9, found=True) == POLL_SECONDS
    assert schedule.looked(2.1, found=False) == POLL_SECONDS


def test_a_keyframe_that_can_end_a_segment_brings_fast_polls_until_one_is_found() -> None:
    schedule = PollSchedule(2.0, now=0.0)
    schedule.looked(2.0, found=True)
    assert schedule.keyframe(4.0)
    assert schedule.looked(4.01, found=False) == AFTER_KEYFRAME_POLL_SECONDS
    assert schedule.looked(4.02, found=True) == POLL_SECONDS
    assert schedule.looked(4.03, found=False) == POLL_SECONDS  # found: back to the slow pace


def test_fast_polls_stop_after_the_window_when_no_segment_comes() -> None:
    schedule = PollSchedule(2.0, now=0.0)
    schedule.looked(2.0, found=True)
    assert schedule.keyframe(4.0)
    end = 4.0 + AFTER_KEYFRAME_WINDOW_SECONDS
    assert schedule.looked(end - 0.01, found=False) == AFTER_KEYFRAME_POLL_SECONDS
    assert schedule.looked(end + 0.01, found=False) == POLL_SECONDS


def test_keyframes_of_a_short_gop_inside_a_segment_do_not_bring_fast_polls() -> None:
    # 0.5 s GOP, 2 s segments: only the keyframe about a segment after the last cut counts.
    schedule = PollSchedule(2.0, now=0.0)
    schedule.looked(2.0, found=True)
    assert [schedule.keyframe(2.0 + t) for t in (0.5, 1.0, 1.5, 2.0)] == [False, False, False, True]


def test_before_the_first_segment_every_keyframe_counts() -> None:
    schedule = PollSchedule(2.0, now=0.0)
    assert schedule.keyframe(0.1) and schedule.keyframe(0.6)
