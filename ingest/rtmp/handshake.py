"""Server side of the RTMP handshake (RTMP 5.2), the simple (non-digest) variant.

ffmpeg, OBS and GStreamer all accept the simple handshake: S1 carries a zero time, a zero
"version" and random bytes; S2 echoes C1.
"""

from __future__ import annotations

import os

from ingest.rtmp.errors import RTMPProtocolError

__all__ = ["HANDSHAKE_SIZE", "RTMP_VERSION", "ServerHandshake"]

RTMP_VERSION = 3
"""RTMP 5.2.2: the only version a C0 may carry."""

HANDSHAKE_SIZE = 1536
"""RTMP 5.2.3: size of C1/S1 and C2/S2."""


class ServerHandshake:
    """Consumes C0+C1 (answering S0+S1+S2) and then C2."""

    def __init__(self) -> None:
        self._got_c1 = False
        self.done = False
        """Whether C2 has been consumed; chunks follow."""

    def receive(self, data: memoryview, pos: int, out: bytearray) -> int:
        """Consume handshake bytes from ``data[pos:]``, append replies to ``out``.

        Returns the offset of the first unconsumed byte.
        """
        end = len(data)
        if not self._got_c1:
            if pos >= end:
                return pos
            # RTMP 5.2.2: C0 is the one-byte version; 6 would be RTMPE, not supported.
            if data[pos] != RTMP_VERSION:
                raise RTMPProtocolError(f"unsupported RTMP version {data[pos]}")
            if end - pos < 1 + HANDSHAKE_SIZE:
                return pos
            c1 = data[pos + 1 : pos + 1 + HANDSHAKE_SIZE]
            out.append(RTMP_VERSION)  # S0
            out += bytes(8) + os.urandom(HANDSHAKE_SIZE - 8)  # S1: time 0, zero, random
            out += c1  # S2 echoes C1 (RTMP 5.2.4)
            pos += 1 + HANDSHAKE_SIZE
            self._got_c1 = True
        if end - pos < HANDSHAKE_SIZE:
            return pos
        self.done = True  # RTMP 5.2.4: C2 echoes S1; its content is not checked
        return pos + HANDSHAKE_SIZE
