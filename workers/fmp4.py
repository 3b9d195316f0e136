"""An incremental reader of ffmpeg's fragmented MP4 (ISO/IEC 14496-12) byte stream, sans I/O.

ffmpeg run with ``-f mp4 -movflags +frag_keyframe+empty_moov+default_base_moof`` writes an
initialization segment (``ftyp`` + ``moov``) and then self-contained ``moof`` + ``mdat``
fragments. :class:`FragmentReader` takes the bytes in chunks of any size and returns events:
:class:`InitSegment` (with each track's id, kind, timescale and RFC 6381 codec string) and
:class:`Fragment` (with each track's decode time and duration, and whether it starts with a
keyframe). It keeps no clock and does no I/O; malformed input raises :class:`FMP4Error`, and a
box larger than ``max_box_bytes`` is refused before it is buffered, so what the reader holds is
bounded.

A library was considered first: ``pymp4`` (1.4.0) pins ``construct==2.8.8`` from 2016, which
clashes with any other user of ``construct``, parses every box declaratively (slow for
hundreds of fragments a second per node) and derives no codec strings. What is needed here is
a handful of boxes read with :mod:`struct`, so this module walks the boxes itself.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from workers.fmp4_boxes import U32, U64, FMP4Error, Track, children, read_trak

MAX_BOX_BYTES = 64 * 1024 * 1024
"""Default bound of one top-level box (a fragment's ``mdat`` at a high bitrate stays far below)."""

_FRAGMENT_PREFIX = {b"styp", b"prft", b"emsg", b"sidx"}


@dataclass(frozen=True)
class InitSegment:
    """``ftyp`` + ``moov``: what a player needs before any fragment (``EXT-X-MAP``)."""

    data: bytes
    tracks: tuple[Track, ...]

    @property
    def codecs(self) -> str:
        """The ``CODECS`` attribute of a multivariant playlist."""
        return ",".join(t.codec for t in self.tracks if t.kind in ("video", "audio"))

    @property
    def video(self) -> Track | None:
        return next((t for t in self.tracks if t.kind == "video"), None)


@dataclass(frozen=True)
class TrackRun:
    """One track's samples in a fragment."""

    track_id: int
    decode_time: int
    """``tfdt`` base media decode time, in the track's timescale."""
    duration: int
    """Sum of the sample durations, in the track's timescale."""
    samples: int
    first_is_sync: bool


@dataclass(frozen=True)
class Fragment:
    """One self-contained ``moof`` + ``mdat`` (with any ``styp``/``prft`` before it)."""

    data: bytes
    sequence: int
    runs: tuple[TrackRun, ...]
    starts_with_keyframe: bool
    """The video track's first sample is a sync sample; always true without a video track."""
    duration: float
    """Seconds, of the reference track (video, else the first track with samples)."""
    decode_time: float
    """Seconds, of the reference track."""


Event = InitSegment | Fragment


class FragmentReader:
    """Bytes of one ffmpeg run in, :data:`Event` objects out."""

    def __init__(self, *, max_box_bytes: int = MAX_BOX_BYTES) -> None:
        self._max = max_box_bytes
        self._buf = bytearray()
        self._scan = 0  # offset of the next unread top-level box in _buf
        self._init: InitSegment | None = None
        self._defaults: dict[int, tuple[int, int]] = {}  # trex: duration, flags per track
        self._unit: bytes | None = None  # b"init", b"frag" or None: what _buf[:_scan] begins
        self._moof: tuple[int, int] | None = None  # payload bounds of the pending moof
        self._started = False

    @property
    def init(self) -> InitSegment | None:
        """The last initialization segment read."""
        return self._init

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Take the next bytes; returns the events they complete (possibly none)."""
        self._buf += data
        events: list[Event] = []
        while True:
            header = self._header()
            if header is None:
                return events
            kind, start, end = header
            if end > len(self._buf):
                return events
            event = self._box(kind, start, end)
            if event is not None:
                events.append(event)

    def close(self) -> None:
        """The stream ended: raises :class:`FMP4Error` if a box or fragment is incomplete."""
        if len(self._buf) > self._scan or self._unit is not None:
            raise FMP4Error(
                f"stream ends inside a box or fragment ({len(self._buf)} bytes unconsumed)"
            )

    def _header(self) -> tuple[bytes, int, int] | None:
        buf, pos = self._buf, self._scan
        if len(buf) - pos < 8:
            return None
        size = U32.unpack_from(buf, pos)[0]
        kind = bytes(buf[pos + 4 : pos + 8])
        if not all(0x20 <= c <= 0x7E for c in kind):
            raise FMP4Error(f"not an MP4 box at byte {pos}: type {kind!r}")
        if not self._started and kind != b"ftyp":
            raise FMP4Error(f"the stream must begin with ftyp, not {kind!r}")
        self._started = True
        header = 8
        if size == 1:
            if len(buf) - pos < 16:
                return None
            size, header = U64.unpack_from(buf, pos + 8)[0], 16
        elif size == 0:
            raise FMP4Error(f"box {kind!r} runs to the end of the stream: not a live fragment")
        if size < header:
            raise FMP4Error(f"box {kind!r} has an impossible size {size}")
        if size > self._max or self._scan + size > 2 * self._max:
            raise FMP4Error(f"box {kind!r} of {size} bytes exceeds the {self._max} byte bound")
        return kind, pos + header, pos + size

    def _box(self, kind: bytes, start: int, end: int) -> Event | None:
        self._scan = end
        if kind == b"ftyp":
            if self._unit is not None:
                raise FMP4Error(f"ftyp inside an unfinished {self._unit.decode()} unit")
            self._unit = b"init"
            return None
        if kind == b"moov":
            if self._unit != b"init":
                raise FMP4Error("moov without ftyp")
            self._init = self._read_moov(start, end)
            return self._take(self._init)
        if kind in _FRAGMENT_PREFIX:
            self._unit = self._unit or b"frag"
            return None
        if kind == b"moof":
            if self._init is None:
                raise FMP4Error("moof before the initialization segment")
            if self._moof is not None or self._unit == b"init":
                raise FMP4Error("moof without the mdat of the previous moof")
            self._unit, self._moof = b"frag", (start, end)
            return None
        if kind == b"mdat":
            if self._moof is None:
                raise FMP4Error("mdat without moof")
            return self._take(self._read_moof(*self._moof))
        if self._unit is None:  # free, mfra, unknown boxes between units: dropped
            del self._buf[:end]
            self._scan = 0
        return None

    def _take(self, event: Event) -> Event:
        data = bytes(self._buf[: self._scan])
        del self._buf[: self._scan]
        self._scan, self._unit, self._moof = 0, None, None
        if isinstance(event, InitSegment):
            return InitSegment(data, event.tracks)
        return Fragment(
            data,
            event.sequence,
            event.runs,
            event.starts_with_keyframe,
            event.duration,
            event.decode_time,
        )

    def _read_moov(self, start: int, end: int) -> InitSegment:
        buf = memoryview(self._buf)[:end]
        try:
            tracks: list[Track] = []
            self._defaults = {}
            for kind, s, e in children(buf, start, end):
                if kind == b"trak":
                    tracks.append(read_trak(buf, s, e))
                elif kind == b"mvex":
                    for k, ts, _te in children(buf, s, e):
                        if k == b"trex":
                            tid, _, dur, _, flags = struct.unpack_from(">IIIII", buf, ts + 4)
                            self._defaults[tid] = (dur, flags)
        except (struct.error, IndexError, UnicodeDecodeError) as exc:
            raise FMP4Error(f"malformed moov: {exc}") from None
        finally:
            buf.release()
        return InitSegment(b"", tuple(tracks))

    def _read_moof(self, start: int, end: int) -> Fragment:
        assert self._init is not None
        buf = memoryview(self._buf)[:end]
        try:
            sequence, runs = 0, []
            for kind, s, e in children(buf, start, end):
                if kind == b"mfhd":
                    sequence = U32.unpack_from(buf, s + 4)[0]
                elif kind == b"traf":
                    runs.append(self._read_traf(buf, s, e))
        except (struct.error, IndexError) as exc:
            raise FMP4Error(f"malformed moof: {exc}") from None
        finally:
            buf.release()
        scales = {t.track_id: t.timescale for t in self._init.tracks}
        video = self._init.video
        reference = next((r for r in runs if video and r.track_id == video.track_id), None)
        keyframe = reference.first_is_sync if reference else video is None
        reference = reference or next((r for r in runs if r.samples), None)
        scale = scales.get(reference.track_id, 0) if reference else 0
        if reference is None or not scale:
            return Fragment(b"", sequence, tuple(runs), keyframe, 0.0, 0.0)
        return Fragment(
            b"",
            sequence,
            tuple(runs),
            keyframe,
            reference.duration / scale,
            reference.decode_time / scale,
        )

    def _read_traf(self, buf: memoryview, start: int, end: int) -> TrackRun:
        track_id, decode_time, samples, duration = 0, 0, 0, 0
        first_flags: int | None = None
        default_duration = default_flags = 0
        for kind, s, e in children(buf, start, end):
            if kind == b"tfhd":
                flags = U32.unpack_from(buf, s)[0] & 0xFFFFFF
                track_id = U32.unpack_from(buf, s + 4)[0]
                default_duration, default_flags = self._defaults.get(track_id, (0, 0))
                pos = s + 8 + (8 if flags & 0x1 else 0) + (4 if flags & 0x2 else 0)
                if flags & 0x8:
                    default_duration = U32.unpack_from(buf, pos)[0]
                    pos += 4
                pos += 4 if flags & 0x10 else 0
                if flags & 0x20:
                    default_flags = U32.unpack_from(buf, pos)[0]
            elif kind == b"tfdt":
                version = buf[s]
                decode_time = (U64 if version == 1 else U32).unpack_from(buf, s + 4)[0]
            elif kind == b"trun":
                count, run_duration, flags = _read_trun(buf, s, e, default_duration)
                if samples == 0 and count:
                    first_flags = flags if flags is not None else default_flags
                samples += count
                duration += run_duration
        sync = first_flags is not None and _is_sync(first_flags)
        return TrackRun(track_id, decode_time, duration, samples, sync)


def _is_sync(flags: int) -> bool:
    """ISO/IEC 14496-12 8.8.3.1: not a non-sync sample, and depends on no other sample."""
    return (flags >> 16) & 1 == 0 and (flags >> 24) & 3 == 2


def _read_trun(
    buf: memoryview, start: int, end: int, default_duration: int
) -> tuple[int, int, int | None]:
    """Sample count, total duration and the first sample's flags (``None`` when the run gives
    none) of one ``trun``."""
    flags = U32.unpack_from(buf, start)[0] & 0xFFFFFF
    count = U32.unpack_from(buf, start + 4)[0]
    pos = start + 8 + (4 if flags & 0x1 else 0)
    first: int | None = None
    if flags & 0x4:
        first = U32.unpack_from(buf, pos)[0]
        pos += 4
    fields = [bit for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit]
    if count * 4 * len(fields) > end - pos:
        raise FMP4Error(f"trun lists {count} samples that do not fit in the box")
    if not fields:
        return count, count * default_duration, first
    values = struct.unpack_from(f">{count * len(fields)}I", buf, pos)
    width = len(fields)
    if flags & 0x100:
        duration = sum(values[0::width])
    else:
        duration = count * default_duration
    if first is None and flags & 0x400 and count:
        first = values[fields.index(0x400)]
    return count, duration, first
