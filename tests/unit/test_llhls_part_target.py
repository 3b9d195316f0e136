"""The declared part target against the fragments ffmpeg writes at common frame and sample
rates (the same rule on real ffmpeg output: tests/e2e/test_low_latency_part_target.py)."""

from __future__ import annotations

import pytest

from workers.argv import LOW_LATENCY_AUDIO_FRAGMENT_SECONDS, LOW_LATENCY_FRAGMENT_SECONDS
from workers.llhls_part_target import (
    AAC_FRAME_SAMPLES,
    AAC_SAMPLE_RATES,
    PART_TARGET,
    SHORT_PART,
    VIDEO_FRAME_RATES,
    fragment_duration,
    part_target_for,
)


def test_the_part_target_is_the_longest_common_fragment_in_whole_milliseconds() -> None:
    assert PART_TARGET == 0.209
    assert round(3 * PART_TARGET, 3) == 0.627, "PART-HOLD-BACK"


@pytest.mark.parametrize("rate", VIDEO_FRAME_RATES, ids=lambda r: f"{r:.3f}fps")
def test_every_common_frame_rate_fills_the_part_target(rate: float) -> None:
    duration = fragment_duration(LOW_LATENCY_FRAGMENT_SECONDS, 1 / rate)
    assert SHORT_PART * PART_TARGET <= duration <= PART_TARGET
    assert duration >= 0.95 * PART_TARGET


@pytest.mark.parametrize("rate", AAC_SAMPLE_RATES)
def test_aac_alone_fills_the_part_target(rate: int) -> None:
    duration = fragment_duration(LOW_LATENCY_AUDIO_FRAGMENT_SECONDS, AAC_FRAME_SAMPLES / rate)
    assert SHORT_PART * PART_TARGET <= duration <= PART_TARGET


def test_fragments_end_at_the_first_sample_at_or_past_the_fragment_duration() -> None:
    assert fragment_duration(0.2, 1 / 30) == pytest.approx(0.2)
    assert fragment_duration(0.2, 1 / 24) == pytest.approx(5 / 24)
    assert fragment_duration(0.2, 1001 / 30000) == pytest.approx(6 * 1001 / 30000)
    # 48 kHz AAC at 0.2 s would be 10 frames, 0.2133 s: why audio alone is cut at 0.19 s
    assert fragment_duration(0.2, 1024 / 48000) == pytest.approx(10 * 1024 / 48000)
    assert fragment_duration(0.19, 1024 / 48000) == pytest.approx(9 * 1024 / 48000)


def test_part_target_for_rounds_up_to_whole_milliseconds() -> None:
    assert part_target_for([0.2, 0.2]) == 0.2
    assert part_target_for([0.2, 5 / 24]) == 0.209
    assert part_target_for([0.2002]) == 0.201
