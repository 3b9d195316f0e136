"""The one exception type that escapes the sans-IO RTMP layer."""

from __future__ import annotations


class RTMPProtocolError(Exception):
    """The peer broke the RTMP protocol (or a hard limit); the connection is dead.

    This is the only exception :meth:`RTMPServerConnection.receive_data` raises. The message
    says what broke and where, e.g. ``"RTMP chunk has truncated extended timestamp"``.
    """


class AMFDecodeError(RTMPProtocolError):
    """An AMF0 value was truncated, malformed, too deeply nested or of an unknown type."""
