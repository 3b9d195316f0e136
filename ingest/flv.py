"""FLV framing of RTMP media messages, and the little codec inspection the hub needs.

RTMP audio/video message bodies are FLV tag bodies (FLV spec 10.1 E.4.2/E.4.3), so relaying a
publish to ffmpeg is: one FLV file header, then for each message an 11-byte tag header, the body
as received, and a 4-byte PreviousTagSize. Enhanced RTMP (v1/v2) bodies pass through unchanged;
only their first byte is read to recognise keyframes and sequence headers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

TAG_AUDIO = 8
TAG_VIDEO = 9
TAG_SCRIPT = 18

_FLV_HEADER = struct.Struct(">3sBBI")
_PREV_TAG_SIZE = struct.Struct(">I")

# FLV spec E.4.3.1: legacy video codec ids; Enhanced RTMP carries a FourCC instead.
_VIDEO_CODECS = {2: "h263", 3: "screen", 4: "vp6", 5: "vp6a", 6: "screen2", 7: "h264", 12: "hevc"}
_AUDIO_CODECS = {
    0: "pcm",
    1: "adpcm",
    2: "mp3",
    3: "pcm",
    4: "nellymoser",
    5: "nellymoser",
    6: "nellymoser",
    7: "g711a",
    8: "g711u",
    10: "aac",
    11: "speex",
    14: "mp3",
}
_FOURCC_CODECS = {
    b"avc1": "h264",
    b"hvc1": "hevc",
    b"av01": "av1",
    b"vp09": "vp9",
    b"Opus": "opus",
    b"fLaC": "flac",
    b"ac-3": "ac3",
    b"ec-3": "eac3",
    b".mp3": "mp3",
    b"mp4a": "aac",
}


def file_header(*, has_audio: bool, has_video: bool) -> bytes:
    """The 9-byte FLV header plus PreviousTagSize0 (FLV spec E.2, E.3)."""
    flags = (0x04 if has_audio else 0) | (0x01 if has_video else 0)
    return _FLV_HEADER.pack(b"FLV", 1, flags, 9) + _PREV_TAG_SIZE.pack(0)


def frame_tag(kind: int, timestamp: int, body: bytes | memoryview) -> bytes:
    """One complete FLV tag: header, ``body`` and the trailing PreviousTagSize (FLV spec E.4.1).

    The 32-bit RTMP timestamp is split into the 24-bit field and TimestampExtended.
    """
    size = len(body)
    ts = timestamp & 0xFFFFFFFF
    header = bytes(
        (
            kind,
            (size >> 16) & 0xFF,
            (size >> 8) & 0xFF,
            size & 0xFF,
            (ts >> 16) & 0xFF,
            (ts >> 8) & 0xFF,
            ts & 0xFF,
            (ts >> 24) & 0xFF,
            0,
            0,
            0,
        )
    )
    return b"".join((header, body, _PREV_TAG_SIZE.pack(size + 11)))


@dataclass(frozen=True)
class MediaInfo:
    """What the first bytes of an audio/video body say."""

    keyframe: bool
    """A video random-access point (always False for audio)."""
    sequence_header: bool
    """Decoder configuration (AVCDecoderConfigurationRecord, AudioSpecificConfig, ...)."""
    codec: str | None
    """Codec name, when recognised."""


_NOT_MEDIA = MediaInfo(keyframe=False, sequence_header=False, codec=None)


def inspect_video(body: bytes | memoryview) -> MediaInfo:
    """Classify a video tag body, legacy or Enhanced RTMP (E.4.3.1 and the Enhanced RTMP spec)."""
    if len(body) < 2:
        return _NOT_MEDIA
    first = body[0]
    if first & 0x80:  # Enhanced RTMP: IsExHeader
        frame_type = (first >> 4) & 0x07
        packet_type = first & 0x0F
        codec = _FOURCC_CODECS.get(bytes(body[1:5])) if len(body) >= 5 else None
        is_sequence = packet_type in (0, 5)  # SequenceStart, MPEG2TSSequenceStart
        return MediaInfo(
            keyframe=frame_type == 1 and not is_sequence, sequence_header=is_sequence, codec=codec
        )
    frame_type = first >> 4
    codec_id = first & 0x0F
    is_sequence = codec_id in (7, 12) and body[1] == 0  # AVCPacketType 0
    return MediaInfo(
        keyframe=frame_type == 1 and not is_sequence,
        sequence_header=is_sequence,
        codec=_VIDEO_CODECS.get(codec_id),
    )


def inspect_audio(body: bytes | memoryview) -> MediaInfo:
    """Classify an audio tag body (E.4.2.1; Enhanced RTMP ExHeader when SoundFormat is 9)."""
    if len(body) < 1:
        return _NOT_MEDIA
    sound_format = body[0] >> 4
    if sound_format == 9:  # Enhanced RTMP audio: AudioPacketType in the low nibble
        codec = _FOURCC_CODECS.get(bytes(body[1:5])) if len(body) >= 5 else None
        return MediaInfo(keyframe=False, sequence_header=(body[0] & 0x0F) == 0, codec=codec)
    is_sequence = sound_format == 10 and len(body) >= 2 and body[1] == 0  # AACPacketType 0
    return MediaInfo(
        keyframe=False, sequence_header=is_sequence, codec=_AUDIO_CODECS.get(sound_format)
    )
