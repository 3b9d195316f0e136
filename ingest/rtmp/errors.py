"""The one exception type that escapes the sans-IO RTMP layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest.rtmp.events import Event


class RTMPProtocolError(Exception):
    """The peer broke the RTMP protocol (or a hard limit); the connection is dead.

    This is the only exception :meth:`RTMPServerConnection.receive_data` raises. The message
    says what broke and where, e.g. ``"RTMP chunk has truncated extended timestamp"``.

    :attr:`events` holds the events the same ``receive_data`` call parsed before the error
    (as h11 delivers what came before a bad byte): the peer did send them, so the caller
    handles them before closing.
    """

    events: tuple[Event, ...] = ()
    """Events parsed before the error in the call that raised it."""


class AMFDecodeError(RTMPProtocolError):
    """An AMF0 value was truncated, malformed, too deeply nested or of an unknown type."""
