"""FLV framing and codec inspection, at byte level."""

from ingest.flv import (
    TAG_AUDIO,
    TAG_VIDEO,
    file_header,
    frame_tag,
    inspect_audio,
    inspect_video,
)


def test_file_header_flags() -> None:
    assert file_header(has_audio=True, has_video=True) == b"FLV\x01\x05\x00\x00\x00\x09" + bytes(4)
    assert file_header(has_audio=True, has_video=False)[4] == 0x04
    assert file_header(has_audio=False, has_video=True)[4] == 0x01


def test_frame_tag_layout_and_previous_tag_size() -> None:
    tag = frame_tag(TAG_VIDEO, 0x12345678, b"\x17\x01abc")
    assert tag[0] == TAG_VIDEO
    assert tag[1:4] == (5).to_bytes(3, "big")
    # 24-bit timestamp then TimestampExtended holds the upper 8 bits (FLV spec E.4.1).
    assert tag[4:7] == bytes((0x34, 0x56, 0x78))
    assert tag[7] == 0x12
    assert tag[8:11] == bytes(3)
    assert tag[11:16] == b"\x17\x01abc"
    assert tag[16:] == (16).to_bytes(4, "big")


def test_frame_tag_timestamp_straddling_24_bits() -> None:
    below = frame_tag(TAG_AUDIO, 0xFFFFFF, b"\xaf\x01")
    above = frame_tag(TAG_AUDIO, 0x1000000, b"\xaf\x01")
    assert below[4:8] == b"\xff\xff\xff\x00"
    assert above[4:8] == b"\x00\x00\x00\x01"


def test_inspect_legacy_avc() -> None:
    assert inspect_video(b"\x17\x00\x00\x00\x00").sequence_header
    assert not inspect_video(b"\x17\x00\x00\x00\x00").keyframe
    key = inspect_video(b"\x17\x01\x00\x00\x00")
    assert key.keyframe and key.codec == "h264"
    assert not inspect_video(b"\x27\x01\x00\x00\x00").keyframe


def test_inspect_enhanced_rtmp_hevc() -> None:
    # IsExHeader | FrameType 1 | PacketType 0 (SequenceStart), FourCC hvc1
    seq = inspect_video(bytes([0x80 | 0x10 | 0x00]) + b"hvc1")
    assert seq.sequence_header and seq.codec == "hevc" and not seq.keyframe
    frame = inspect_video(bytes([0x80 | 0x10 | 0x03]) + b"hvc1" + b"\x00")
    assert frame.keyframe and not frame.sequence_header
    inter = inspect_video(bytes([0x80 | 0x20 | 0x01]) + b"av01" + b"\x00")
    assert not inter.keyframe and inter.codec == "av1"


def test_inspect_audio() -> None:
    assert inspect_audio(b"\xaf\x00\x12\x10").sequence_header
    raw = inspect_audio(b"\xaf\x01\x21")
    assert raw.codec == "aac" and not raw.sequence_header
    assert inspect_audio(b"\x2f").codec == "mp3"
    assert inspect_audio(bytes([0x90]) + b"Opus").sequence_header
    assert not inspect_audio(b"").sequence_header
