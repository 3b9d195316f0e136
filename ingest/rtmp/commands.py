"""NetConnection and NetStream commands (RTMP 7.2): decoding, events and automatic replies.

Replies that need no decision are sent at once, as nginx-rtmp and SRS do for FMLE-style
publishers (ffmpeg, OBS, GStreamer): ``releaseStream`` and ``FCPublish`` get an empty
``_result`` (plus ``onFCPublish`` for ``FCPublish``), ``createStream`` gets a new stream id.
Transaction id 0 means "no reply expected" (GStreamer sends those two commands with 0), so
no ``_result`` is sent for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ingest.rtmp import amf0
from ingest.rtmp.errors import RTMPProtocolError
from ingest.rtmp.events import (
    CommandReceived,
    ConnectRequested,
    Event,
    MetadataReceived,
    PlayRequested,
    PublishRequested,
    StreamCreated,
    UnpublishRequested,
)
from ingest.rtmp.messages import MessageType
from ingest.rtmp.state import ConnectionState

__all__ = ["COMMAND_CSID", "MAX_PUBLISHES", "STREAM_CSID", "CommandHandler", "metadata_event"]

COMMAND_CSID = 3
"""Chunk stream id of our NetConnection command replies (as nginx-rtmp)."""
STREAM_CSID = 5
"""Chunk stream id of our NetStream ``onStatus`` messages (as nginx-rtmp)."""

SendMessage = Callable[[int, int, int, bytes], None]
"""``(csid, type_id, stream_id, payload)``: queue one outgoing message."""

MAX_PUBLISHES = 8
"""Message streams one connection may publish on at once (encoders use one). The name of each
is kept until its unpublish, so without a cap a peer could grow that memory without end."""

_CONNECT_PROPERTIES = {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0}
_UNPUBLISH_COMMANDS = ("FCUnpublish", "closeStream", "deleteStream")


class CommandHandler:
    """Turns AMF0 command messages into events and sends the automatic replies."""

    def __init__(self, send: SendMessage, state: ConnectionState, *, max_amf_depth: int) -> None:
        self._send = send
        self._state = state
        self._max_amf_depth = max_amf_depth
        self._next_stream_id = 1
        self._publishing: dict[int, str] = {}  # message stream id -> publishing name
        self._handlers: dict[str, Callable[[int, float, list[Any]], Event | None]] = {
            "connect": self._on_connect,
            "releaseStream": self._on_release_stream,
            "FCPublish": self._on_fc_publish,
            "createStream": self._on_create_stream,
            "publish": self._on_publish,
            "play": self._on_play,
            "FCUnpublish": self._on_fc_unpublish,
            "closeStream": self._on_close_stream,
            "deleteStream": self._on_delete_stream,
        }

    # -- incoming -----------------------------------------------------------------------------

    def handle(self, stream_id: int, payload: bytes) -> Event | None:
        """Decode one command message (name, transaction id, arguments), send the automatic
        reply if any, and return the event to report (if any)."""
        values = amf0.decode(payload, max_depth=self._max_amf_depth)
        if not values or not isinstance(values[0], str):
            raise RTMPProtocolError("RTMP command message does not start with a command name")
        name = values[0]
        transaction_id = _number(values[1]) if len(values) > 1 else 0.0
        arguments = values[2:]
        self._state.peer_command(name)  # raises if the command is out of order
        handler = self._handlers.get(name)
        if handler is None:
            return CommandReceived(stream_id, name, transaction_id, arguments)
        return handler(stream_id, transaction_id, arguments)

    def _on_connect(
        self, stream_id: int, transaction_id: float, arguments: list[Any]
    ) -> Event | None:
        command_object = arguments[0] if arguments and isinstance(arguments[0], dict) else {}
        app = command_object.get("app")
        tc_url = command_object.get("tcUrl")
        return ConnectRequested(
            transaction_id=transaction_id,
            app=app.rstrip("/") if isinstance(app, str) else "",
            tc_url=tc_url if isinstance(tc_url, str) else None,
            properties=dict(command_object),
        )

    def _on_release_stream(
        self, stream_id: int, transaction_id: float, arguments: list[Any]
    ) -> Event | None:
        self._empty_result(transaction_id)
        return None

    def _on_fc_publish(
        self, stream_id: int, transaction_id: float, arguments: list[Any]
    ) -> Event | None:
        self._empty_result(transaction_id)
        info = {
            "level": "status",
            "code": "NetStream.Publish.Start",
            "description": f"FCPublish to stream {_string_argument(arguments, 1)}.",
        }
        self._send_command(COMMAND_CSID, 0, "onFCPublish", 0.0, None, info)
        return None

    def _on_create_stream(
        self, stream_id: int, transaction_id: float, arguments: list[Any]
    ) -> Event | None:
        new_id = self._next_stream_id
        self._next_stream_id += 1
        self._send_command(COMMAND_CSID, 0, "_result", transaction_id, None, float(new_id))
        return StreamCreated(new_id)

    def _on_publish(
        self, stream_id: int, transaction_id: float, arguments: list[Any]
    ) -> Event | None:
        name, _, query = _string_argument(arguments, 1).partition("?")
        publish_type = _string_argument(arguments, 2) or "live"
        if stream_id not in self._publishing and len(self._publishing) >= MAX_PUBLISHES:
            raise RTMPProtocolError(f"RTMP peer publishes on more than {MAX_PUBLISHES} streams")
        self._publishing[stream_id] = name
        return PublishRequested(stream_id, transaction_id, name, publish_type, query)

    def _on_play(self, stream_id: int, transaction_id: float, arguments: list[Any]) -> Event | None:
        return PlayRequested(stream_id, _string_argument(arguments, 1))

    def _on_fc_unpublish(
        self, stream_id: int, transaction_id: float, arguments: list[Any]
    ) -> Event | None:
        # FCUnpublish names the stream rather than sending on its message stream.
        name = _string_argument(arguments, 1).partition("?")[0]
        for publishing_id, publishing_name in self._publishing.items():
            if publishing_name == name:
                stream_id = publishing_id
                break
        self._empty_result(transaction_id)
        return self._unpublish(stream_id, "FCUnpublish")

    def _on_close_stream(
        self, stream_id: int, transaction_id: float, arguments: list[Any]
    ) -> Event | None:
        return self._unpublish(stream_id, "closeStream")

    def _on_delete_stream(
        self, stream_id: int, transaction_id: float, arguments: list[Any]
    ) -> Event | None:
        # RTMP 7.2.2.3: deleteStream(transaction id, null, stream id), sent on stream 0.
        target = arguments[1] if len(arguments) > 1 else None
        if isinstance(target, float) and target.is_integer() and 0 <= target < 2**32:
            stream_id = int(target)
        return self._unpublish(stream_id, "deleteStream")

    def _unpublish(self, stream_id: int, command: str) -> Event | None:
        # One UnpublishRequested per publish: ffmpeg sends FCUnpublish then deleteStream.
        if self._publishing.pop(stream_id, None) is not None:
            return UnpublishRequested(stream_id, command)
        return None

    # -- publish bookkeeping ------------------------------------------------------------------

    def publishing_name(self, stream_id: int) -> str:
        """The name the peer asked to publish on ``stream_id`` ("" if none)."""
        return self._publishing.get(stream_id, "")

    def forget_publish(self, stream_id: int) -> None:
        """Stop tracking the publish on ``stream_id`` (rejected or ended by us)."""
        self._publishing.pop(stream_id, None)

    # -- outgoing -----------------------------------------------------------------------------

    def connect_result(self, transaction_id: float) -> None:
        """``_result`` of an accepted ``connect`` (NetConnection.Connect.Success)."""
        info = {
            "level": "status",
            "code": "NetConnection.Connect.Success",
            "description": "Connection succeeded.",
            "objectEncoding": 0.0,
        }
        self._send_command(
            COMMAND_CSID, 0, "_result", transaction_id, dict(_CONNECT_PROPERTIES), info
        )

    def connect_error(self, transaction_id: float, description: str) -> None:
        """``_error`` of a rejected ``connect`` (NetConnection.Connect.Rejected)."""
        info = {
            "level": "error",
            "code": "NetConnection.Connect.Rejected",
            "description": description,
        }
        self._send_command(COMMAND_CSID, 0, "_error", transaction_id, None, info)

    def send_status(self, stream_id: int, info: dict[str, Any]) -> None:
        """``onStatus`` on message stream ``stream_id`` (RTMP 7.2.2)."""
        self._send_command(STREAM_CSID, stream_id, "onStatus", 0.0, None, info)

    def _empty_result(self, transaction_id: float) -> None:
        if transaction_id:
            self._send_command(COMMAND_CSID, 0, "_result", transaction_id, None, amf0.UNDEFINED)

    def _send_command(self, csid: int, stream_id: int, *values: Any) -> None:
        self._send(csid, MessageType.COMMAND_AMF0, stream_id, amf0.encode(*values))


def metadata_event(stream_id: int, payload: bytes, max_depth: int) -> MetadataReceived | None:
    """RTMP 7.1.2: the event of a ``[@setDataFrame,] onMetaData, {...}`` data message, or
    ``None`` for any other data message."""
    decoder = amf0.AMF0Decoder(payload, max_depth=max_depth)
    if decoder.at_end:
        return None
    start = 0
    name = decoder.read_value()
    if name == "@setDataFrame" and not decoder.at_end:
        start = decoder.offset
        name = decoder.read_value()
    if name != "onMetaData" or decoder.at_end:
        return None
    metadata = decoder.read_value()
    if not isinstance(metadata, dict):
        return None
    return MetadataReceived(stream_id, dict(metadata), payload[start : decoder.offset])


def _number(value: Any) -> float:
    """A transaction id; anything but a number counts as 0 (no reply expected)."""
    return value if isinstance(value, float) else 0.0


def _string_argument(arguments: list[Any], index: int) -> str:
    """Argument ``index`` if it is a string, else ""."""
    value = arguments[index] if len(arguments) > index else None
    return value if isinstance(value, str) else ""
