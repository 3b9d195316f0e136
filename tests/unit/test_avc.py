"""The AVC sequence header reader, at byte level: real headers libx264 wrote (through ffmpeg's
FLV muxer), every truncation, and what the stream stats take from it."""

from __future__ import annotations

import pytest

from ingest.avc import AVCConfig, AVCConfigError, parse_avc_config
from ingest.flv import inspect_video
from ingest.stats import StreamStats

HEADERS = {
    # 640x360 Main 3.0: 368 lines of macroblocks cropped by 8
    "014d401effe10018674d401eeca05017fcb80880000003008000001e078b16cb01000568ebe3cb20": (
        AVCConfig(77, 0x40, 30, 640, 360),
        "avc1.4D401E",
    ),
    # 1920x1080 High 4.0
    "01640028ffe1001b67640028acd940780227e5c044000003000400000300f03c60c65801000668ebe3cb22c0"
    "fdf8f800": (AVCConfig(100, 0, 40, 1920, 1080), "avc1.640028"),
    # 426x240 Constrained Baseline 2.1: an odd width in macroblocks, cropped
    "0142c015ffe100196742c015d901b1fe4f0110000003001000000303c0f162e48001000568cb83cb20": (
        AVCConfig(66, 0xC0, 21, 426, 240),
        "avc1.42C015",
    ),
    # 1280x720 High 4:4:4 Predictive 3.1: chroma format and bit depths in the SPS
    "01f4001fffe1001a67f4001f919b280a00b76022000003000200000300781e30632c01000668ebe3c44844f"
    "ff8f800": (AVCConfig(244, 0, 31, 1280, 720), "avc1.F4001F"),
}


@pytest.mark.parametrize("hex_record", list(HEADERS))
def test_profile_level_and_picture_size_of_real_headers(hex_record: str) -> None:
    config, codec_string = HEADERS[hex_record]
    parsed = parse_avc_config(bytes.fromhex(hex_record))
    assert parsed == config
    assert parsed.codec_string == codec_string


@pytest.mark.parametrize("hex_record", list(HEADERS))
def test_every_truncation_is_an_avc_config_error(hex_record: str) -> None:
    record = bytes.fromhex(hex_record)
    sps_end = 8 + int.from_bytes(record[6:8], "big")
    for cut in range(sps_end):
        with pytest.raises(AVCConfigError):
            parse_avc_config(record[:cut])
    assert parse_avc_config(record[:sps_end]) == HEADERS[hex_record][0]  # the PPS is not read


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (b"\x02\x4d\x40\x1e\xff\xe1\x00\x04abcd", "not version 1"),
        (b"\x01\x4d\x40\x1e\xff\xe0\x00\x04abcd", "no sequence parameter set"),
        (b"\x01\x4d\x40\x1e\xff\xe1\x00\x09abcd", "truncated"),
        (b"\x01\x4d\x40\x1e\xff\xe1\x00\x08\x67\x4d\x40\x1e\x00\x00\x00\x00", "overlong"),
    ],
)
def test_malformed_headers_say_what_is_wrong(record: bytes, message: str) -> None:
    with pytest.raises(AVCConfigError, match=message):
        parse_avc_config(record)


def test_the_stats_take_the_picture_size_from_the_stream_over_metadata() -> None:
    record = bytes.fromhex(next(iter(HEADERS)))
    stats = StreamStats()
    stats.on_metadata({"width": 1920.0, "height": 1080.0, "videocodecid": 7.0})
    body = b"\x17\x00\x00\x00\x00" + record  # keyframe, AVC, AVCPacketType 0, cts 0
    stats.on_media(9, 0, inspect_video(body), body)
    assert stats.video is not None
    assert (stats.video.width, stats.video.height) == (640, 360)
    assert stats.video.codec_string == "avc1.4D401E"


def test_an_enhanced_rtmp_sequence_start_is_read_too() -> None:
    record = bytes.fromhex(next(iter(HEADERS)))
    body = b"\x90avc1" + record  # IsExHeader, keyframe, SequenceStart
    stats = StreamStats()
    stats.on_media(9, 0, inspect_video(body), body)
    assert stats.video is not None and stats.video.height == 360


def test_an_unreadable_header_leaves_the_metadata_size() -> None:
    stats = StreamStats()
    stats.on_metadata({"width": 1280.0, "height": 720.0})
    body = b"\x17\x00\x00\x00\x00\x01\x4d"
    stats.on_media(9, 0, inspect_video(body), body)
    assert stats.video is not None and (stats.video.width, stats.video.height) == (1280, 720)
    assert stats.video.codec_string is None
