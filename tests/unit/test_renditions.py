"""The rendition ladder: validation, storage form, which rungs a source gets, and the ffmpeg
command lines of a ladder, checked as lists."""

from __future__ import annotations

import pytest

from workers.argv import hls_argv, input_argv
from workers.ladder_argv import RungOutput, ladder_hls_argv, ladder_llhls_argv, rung_encode_argv
from workers.renditions import (
    RUNGS,
    SOURCE,
    decode_renditions,
    encode_renditions,
    ladder_problem,
    produced_rungs,
    scaled_width,
)

FF = "/opt/ffmpeg"


@pytest.mark.parametrize(
    ("ladder", "problem"),
    [
        (["source"], None),
        (["source", "720p", "480p", "360p"], None),
        (["source", "240p"], None),
        ([], '"source" must be the first rendition'),
        (["720p", "source"], '"source" must be the first rendition'),
        (["source", "4k"], "unknown rendition '4k' (known: source, 1080p, 720p, 480p, 360p, 240p)"),
        (["source", "480p", "480p"], "rendition '480p' is listed twice"),
        (["source", "source"], "rendition 'source' is listed twice"),
    ],
)
def test_a_ladder_starts_with_source_and_names_known_rungs_once(
    ladder: list[str], problem: str | None
) -> None:
    assert ladder_problem(ladder) == problem


def test_the_ladder_is_stored_as_comma_separated_names() -> None:
    ladder = ("source", "720p", "360p")
    assert encode_renditions(ladder) == "source,720p,360p"
    assert decode_renditions("source,720p,360p") == ladder
    assert decode_renditions("") == (SOURCE,)
    assert decode_renditions(None) == (SOURCE,)


def test_rungs_at_or_above_the_source_height_are_skipped() -> None:
    ladder = ("source", "360p", "1080p", "720p", "480p")
    produced = produced_rungs(ladder, has_video=True, source_height=720)
    assert [r.name for r in produced] == ["480p", "360p"]
    assert produced_rungs(ladder, has_video=True, source_height=200) == ()


def test_no_rungs_without_video_or_a_known_height() -> None:
    ladder = ("source", "360p")
    assert produced_rungs(ladder, has_video=False, source_height=1080) == ()
    assert produced_rungs(ladder, has_video=True, source_height=None) == ()


def test_rung_widths_follow_the_source_aspect_ratio_rounded_to_even() -> None:
    assert scaled_width(RUNGS["360p"], 1920, 1080) == 640
    assert scaled_width(RUNGS["240p"], 640, 360) == 426
    assert scaled_width(RUNGS["480p"], 1440, 1080) == 640
    assert scaled_width(RUNGS["720p"], None, None) == 1280


def test_a_rung_is_scaled_encoded_with_source_keyframes_and_copies_audio() -> None:
    rung = RUNGS["360p"]
    assert rung_encode_argv(rung) == [
        "-map", "0:v:0", "-map", "0:a?",
        "-vf", "scale=-2:360:flags=bilinear,format=yuv420p",
        "-c:v", "libx264", "-preset", "veryfast",
        "-profile:v", "main", "-level:v", "3.1",
        "-b:v", "800k", "-maxrate", "856k", "-bufsize", "1200k",
        "-force_key_frames", "source", "-g", "100000", "-sc_threshold", "0",
        "-c:a", "copy",
    ]  # fmt: skip
    low = rung_encode_argv(rung, low_latency=True)
    assert low[low.index("-preset") : low.index("-preset") + 4] == [
        "-preset", "superfast", "-tune", "zerolatency",
    ]  # fmt: skip


def test_a_standard_ladder_is_the_source_hls_output_then_one_per_rung() -> None:
    rungs = [
        RungOutput(RUNGS["720p"], "/d/720p-%d.ts", "/d/.p-720p.m3u8"),
        RungOutput(RUNGS["360p"], "/d/360p-%d.ts", "/d/.p-360p.m3u8"),
    ]
    argv = ladder_hls_argv(
        FF,
        segment_seconds=2,
        source_pattern="/d/s-%d.ts",
        source_playlist="/d/.p.m3u8",
        rungs=rungs,
    )
    plain = hls_argv(
        FF, segment_seconds=2, segment_pattern="/d/s-%d.ts", playlist_path="/d/.p.m3u8"
    )
    first_end = argv.index("/d/.p.m3u8") + 1
    assert argv[:first_end] == plain  # the source rendition is exactly today's output
    rest = argv[first_end:]
    assert rest[: len(rung_encode_argv(RUNGS["720p"]))] == rung_encode_argv(RUNGS["720p"])
    assert [a for a in rest if a.endswith(".m3u8")] == ["/d/.p-720p.m3u8", "/d/.p-360p.m3u8"]
    assert rest.count("-f") == 2 and rest.count("libx264") == 2
    assert argv[-1] == "/d/.p-360p.m3u8"


def test_a_low_latency_ladder_writes_each_rung_to_its_own_pipe() -> None:
    argv = ladder_llhls_argv(FF, rungs=[RUNGS["480p"], RUNGS["240p"]], fds=[5, 6])
    head = input_argv(FF, progress=False, probesize=32_768, copy=False)
    assert argv[: len(head)] == head
    assert [a for a in argv if a.startswith("pipe:")] == ["pipe:0", "pipe:1", "pipe:5", "pipe:6"]
    assert argv.count("+frag_keyframe+empty_moov+default_base_moof") == 3
    assert argv.count("zerolatency") == 2


def test_hls_argv_still_refuses_a_pattern_without_a_counter() -> None:
    with pytest.raises(ValueError, match="no %d counter"):
        ladder_hls_argv(
            FF,
            segment_seconds=2,
            source_pattern="/d/s.ts",
            source_playlist="/d/.p.m3u8",
            rungs=[],
        )
