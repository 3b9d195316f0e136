"""A low-latency rung's fMP4 reader: a stream it cannot read is told once, and the rest of the
pipe is taken and discarded (ffmpeg must never block writing to it). Byte level."""

from __future__ import annotations

import struct

from workers.fmp4 import FMP4Error
from workers.llhls import LowLatencyStream
from workers.llhls_ladder import RungReader


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def test_an_unreadable_rung_is_told_once_and_the_rest_is_discarded() -> None:
    told: list[FMP4Error] = []
    changes: list[None] = []
    stream = LowLatencyStream(part_target=0.2, segment_target=2.0, window_segments=6)
    reader = RungReader(stream, lambda: 0.0, lambda: changes.append(None), told.append)
    reader.take(struct.pack(">I", 4) + b"moov")  # a box shorter than its own header
    assert len(told) == 1 and reader.error is told[0]
    for _ in range(3):
        reader.take(box(b"moof", bytes(64)))  # later chunks: taken, ignored, not told again
    assert len(told) == 1 and not changes and not stream.segments
