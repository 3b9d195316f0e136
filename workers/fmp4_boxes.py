"""The box level of the fragmented MP4 reader (ISO/IEC 14496-12): walking boxes inside a
buffer, reading a ``trak`` and deriving RFC 6381 codec strings from sample entries."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

U32 = struct.Struct(">I")
U64 = struct.Struct(">Q")
CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf"}
_KINDS = {b"vide": "video", b"soun": "audio"}


class FMP4Error(ValueError):
    """The byte stream is not the fragmented MP4 ffmpeg writes (garbage, truncated, too big)."""


@dataclass(frozen=True)
class Track:
    """One track of the initialization segment."""

    track_id: int
    kind: str
    """``video``, ``audio`` or the handler type of another track."""
    timescale: int
    codec: str
    """RFC 6381 codec string (``avc1.64001e``, ``hvc1.1.6.L63.90``, ``av01.0.04M.08``,
    ``mp4a.40.2``, ``opus``), or the sample entry's four-character code."""
    width: int = 0
    """Pixels, from ``tkhd`` (0 for audio)."""
    height: int = 0


def children(buf: memoryview, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """The boxes inside ``buf[start:end]``: type, payload start, end."""
    pos = start
    while pos < end:
        if end - pos < 8:
            raise FMP4Error(f"truncated box header at byte {pos}")
        size = U32.unpack_from(buf, pos)[0]
        kind = bytes(buf[pos + 4 : pos + 8])
        header = 8
        if size == 1:
            size, header = U64.unpack_from(buf, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise FMP4Error(f"box {kind!r} at byte {pos} overruns its parent")
        yield kind, pos + header, pos + size
        pos += size


def read_trak(buf: memoryview, start: int, end: int) -> Track:
    track_id, timescale, kind, codec = 0, 0, "", ""
    width = height = 0
    stack = [(start, end)]
    while stack:
        s, e = stack.pop()
        for box, cs, ce in children(buf, s, e):
            if box in CONTAINERS:
                stack.append((cs, ce))
            elif box == b"tkhd":  # 8.3.2: width and height are 16.16 fixed point
                track_id = U32.unpack_from(buf, cs + (20 if buf[cs] == 1 else 12))[0]
                at = cs + (88 if buf[cs] == 1 else 76)
                if at + 8 <= ce:
                    width, height = (v >> 16 for v in struct.unpack_from(">II", buf, at))
            elif box == b"mdhd":
                timescale = U32.unpack_from(buf, cs + (20 if buf[cs] == 1 else 12))[0]
            elif box == b"hdlr":
                handler = bytes(buf[cs + 8 : cs + 12])
                kind = _KINDS.get(handler, handler.decode("ascii", "replace"))
            elif box == b"stsd":
                for entry, es, ee in children(buf, cs + 8, ce):
                    codec = codec or _codec(buf, entry, es, ee)
    if not track_id or not timescale:
        raise FMP4Error("a trak without track id or timescale")
    return Track(track_id, kind, timescale, codec, width, height)


def _codec(buf: memoryview, entry: bytes, start: int, end: int) -> str:
    """RFC 6381 ``codecs`` value of one sample entry."""
    name = entry.decode("ascii", "replace")
    visual = entry in (b"avc1", b"avc3", b"hvc1", b"hev1", b"av01")
    offset = 78 if visual else 28  # VisualSampleEntry / AudioSampleEntry fields
    if end - start < offset:
        raise FMP4Error(f"truncated sample entry {name!r}")
    configs = {box: bytes(buf[s:e]) for box, s, e in children(buf, start + offset, end)}
    if entry in (b"avc1", b"avc3") and len(configs.get(b"avcC", b"")) >= 4:
        return f"{name}.{configs[b'avcC'][1:4].hex()}"
    if entry in (b"hvc1", b"hev1") and len(configs.get(b"hvcC", b"")) >= 13:
        return f"{name}.{_hevc(configs[b'hvcC'])}"
    if entry == b"av01" and len(configs.get(b"av1C", b"")) >= 3:
        return f"av01.{_av1(configs[b'av1C'])}"
    if entry == b"mp4a" and b"esds" in configs:
        return _mp4a(configs[b"esds"])
    return {"Opus": "opus", "fLaC": "flac"}.get(name, name)


def _hevc(c: bytes) -> str:
    """ISO/IEC 14496-15 E.3: profile space+idc, reversed compatibility flags, tier+level,
    constraint bytes without trailing zeros."""
    space = "" if c[1] >> 6 == 0 else "ABC"[(c[1] >> 6) - 1]
    compat = int(f"{U32.unpack_from(c, 2)[0]:032b}"[::-1], 2)
    tier = "H" if c[1] & 0x20 else "L"
    constraints = c[6:12].rstrip(b"\0")
    parts = [f"{space}{c[1] & 0x1F}", f"{compat:X}", f"{tier}{c[12]}"]
    return ".".join(parts + [f"{b:X}" for b in constraints])


def _av1(c: bytes) -> str:
    """AV1 codec ISO media file format binding, Codecs Parameter String: profile, level+tier,
    bit depth."""
    depth = 12 if c[2] & 0x20 else 10 if c[2] & 0x40 else 8
    return f"{c[1] >> 5}.{c[1] & 0x1F:02d}{'H' if c[2] & 0x80 else 'M'}.{depth:02d}"


def _mp4a(esds: bytes) -> str:
    """RFC 6381 3.3: ``mp4a.<objectTypeIndication hex>.<audioObjectType>``."""
    pos, oti, aot = 4, 0, 0
    while pos < len(esds):
        tag = esds[pos]
        pos += 1
        size = 0
        for _ in range(4):
            byte = esds[pos]
            pos += 1
            size = size << 7 | byte & 0x7F
            if not byte & 0x80:
                break
        if tag == 0x03:  # ES_Descriptor: ES_ID, flags, then sub-descriptors
            flags = esds[pos + 2]
            pos += 3 + (2 if flags & 0x80 else 0) + (2 if flags & 0x20 else 0)
            if flags & 0x40:
                pos += 1 + esds[pos]
        elif tag == 0x04:  # DecoderConfigDescriptor
            oti = esds[pos]
            pos += 13
        elif tag == 0x05:  # DecoderSpecificInfo: AudioSpecificConfig
            aot = esds[pos] >> 3
            if aot == 31:
                aot = 32 + ((esds[pos] & 0x7) << 3 | esds[pos + 1] >> 5)
            break
        else:
            pos += size
    return f"mp4a.{oti:x}.{aot}" if aot else f"mp4a.{oti:x}"
