"""What an H.264 publish's sequence header says: the profile and level (for an RFC 6381 codec
string) and the picture size, from the AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1)
and its first sequence parameter set (ITU-T H.264 7.3.2.1.1). Pure: bytes in, values out.

The picture size decides which rungs of an adaptive-bitrate ladder a publish gets, so it is
read from the stream itself, not only from ``onMetaData`` (which a publisher may leave out).
"""

from __future__ import annotations

from dataclasses import dataclass

_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
"""Profiles whose SPS carries chroma format, bit depths and scaling matrices (7.3.2.1.1)."""
MAX_SPS_BYTES = 4096


class AVCConfigError(ValueError):
    """The AVC sequence header is truncated or not what ISO/IEC 14496-15 describes."""


@dataclass(frozen=True)
class AVCConfig:
    """The parts of an AVC sequence header liverelay uses."""

    profile: int
    """``AVCProfileIndication`` (66 baseline, 77 main, 100 high...)."""
    compatibility: int
    """``profile_compatibility`` (the constraint flags byte)."""
    level: int
    """``AVCLevelIndication``, ten times the level (31 is 3.1)."""
    width: int
    """Picture width after the SPS's cropping."""
    height: int
    """Picture height after the SPS's cropping."""

    @property
    def codec_string(self) -> str:
        """RFC 6381 3.3: ``avc1.`` and the three bytes in hex (``avc1.4D401F``)."""
        return f"avc1.{self.profile:02X}{self.compatibility:02X}{self.level:02X}"


def parse_avc_config(record: bytes | memoryview) -> AVCConfig:
    """The profile, level and picture size of an AVCDecoderConfigurationRecord (an FLV AVC
    sequence header's body after its 5-byte video tag header). Raises :class:`AVCConfigError`."""
    data = bytes(record)
    if len(data) < 8 or data[0] != 1:
        raise AVCConfigError("AVC sequence header is truncated or not version 1")
    if data[5] & 0x1F == 0:
        raise AVCConfigError("AVC sequence header has no sequence parameter set")
    size = int.from_bytes(data[6:8], "big")
    sps = data[8 : 8 + size]
    if len(sps) != size or size < 4 or size > MAX_SPS_BYTES:
        raise AVCConfigError("AVC sequence parameter set is truncated")
    width, height = _picture_size(_unescape(sps[1:]))
    return AVCConfig(data[1], data[2], data[3], width, height)


def _unescape(nal: bytes) -> bytes:
    """The RBSP of a NAL unit: every ``00 00 03`` loses its ``03`` (H.264 7.4.1)."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


class _Bits:
    """An MSB-first bit reader with Exp-Golomb codes (H.264 9.1)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def bit(self) -> int:
        byte = self._pos >> 3
        if byte >= len(self._data):
            raise AVCConfigError("AVC sequence parameter set ends early")
        value = (self._data[byte] >> (7 - (self._pos & 7))) & 1
        self._pos += 1
        return value

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise AVCConfigError("AVC sequence parameter set has an overlong Exp-Golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code & 1 else -(code // 2)


def _picture_size(rbsp: bytes) -> tuple[int, int]:
    """Width and height from a sequence parameter set's RBSP (7.3.2.1.1, cropping 7.4.2.1.1)."""
    bits = _Bits(rbsp)
    profile = bits.bits(8)
    bits.bits(16)  # constraint flags, level_idc
    bits.ue()  # seq_parameter_set_id
    chroma_format = 1
    separate_colour_plane = 0
    if profile in _HIGH_PROFILES:
        chroma_format = bits.ue()
        if chroma_format == 3:
            separate_colour_plane = bits.bit()
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.bit()  # qpprime_y_zero_transform_bypass_flag
        if bits.bit():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format != 3 else 12):
                if bits.bit():
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        bits.bit()
        bits.se()
        bits.se()
        for _ in range(min(bits.ue(), 255)):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.bit()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_map_units = bits.ue() + 1
    frame_mbs_only = bits.bit()
    if not frame_mbs_only:
        bits.bit()  # mb_adaptive_frame_field_flag
    bits.bit()  # direct_8x8_inference_flag
    crop = (0, 0, 0, 0)
    if bits.bit():  # frame_cropping_flag
        crop = (bits.ue(), bits.ue(), bits.ue(), bits.ue())
    chroma = 0 if separate_colour_plane else chroma_format
    crop_x = 1 if chroma == 0 else (2 if chroma in (1, 2) else 1)
    crop_y = (1 if chroma == 0 else (2 if chroma == 1 else 1)) * (2 - frame_mbs_only)
    width = width_mbs * 16 - crop_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_map_units * 16 - crop_y * (crop[2] + crop[3])
    if width <= 0 or height <= 0:
        raise AVCConfigError("AVC sequence parameter set crops the whole picture away")
    return width, height


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    """7.3.2.1.1.1: a scaling list is delta-coded; only its length in bits matters here."""
    last = next_scale = 8
    for _ in range(size):
        if next_scale != 0:
            next_scale = (last + bits.se() + 256) % 256
        last = next_scale if next_scale != 0 else last
