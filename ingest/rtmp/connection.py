"""The sans-IO RTMP server connection: bytes in, events out, replies queued as bytes.

Typical use::

    conn = RTMPServerConnection()
    for event in conn.receive_data(data):      # raises only RTMPProtocolError
        if isinstance(event, ConnectRequested):
            conn.accept_connect(event.transaction_id)
        ...
    sock.sendall(conn.data_to_send())

The connection answers the protocol plumbing itself (handshake, pings, acknowledgements,
``releaseStream``/``FCPublish``/``createStream``) and leaves every decision (connect, publish,
play) to its user through ``accept_*``/``reject_*``/``send_status``. Which command may come
when is the table in :mod:`ingest.rtmp.state`; one out of order is a protocol error.

Until a publish is accepted the peer is a stranger, so the size limits are small (the
``pre_publish_*`` arguments); :meth:`RTMPServerConnection.accept_publish` raises them to the
configured ones. So that what follows a ``publish`` is read under the right limits whatever
the peer pipelines, parsing pauses after a ``publish`` until its user accepts or refuses it
(as h11 pauses after a request): the bytes after it wait in the receive buffer, and the next
:meth:`~RTMPServerConnection.receive_data` call (``b""`` will do) goes on with them.
"""

from __future__ import annotations

from typing import Any

from ingest.rtmp import amf0
from ingest.rtmp.buffer import ReceiveBuffer
from ingest.rtmp.chunks import ChunkReader, ChunkWriter, RawMessage
from ingest.rtmp.commands import CommandHandler, metadata_event
from ingest.rtmp.errors import RTMPProtocolError
from ingest.rtmp.events import (
    AcknowledgementReceived,
    Event,
    HandshakeCompleted,
    MediaReceived,
)
from ingest.rtmp.handshake import ServerHandshake
from ingest.rtmp.messages import (
    CONTROL_CSID,
    MessageType,
    PeerBandwidthLimit,
    UserControlEvent,
    read_u32,
    read_user_control,
    u32,
    user_control,
)
from ingest.rtmp.state import ConnectionState, State

__all__ = ["RTMPServerConnection"]

_MAX_CHUNK_SIZE_FIELD = 0x7FFFFFFF
"""RTMP 5.4.1: the chunk size is 31 bits; the top bit must be zero."""

PRE_PUBLISH_MAX_MESSAGE_SIZE = 64 * 1024
"""Default message size limit before a publish is accepted: commands and metadata are small."""
PRE_PUBLISH_MAX_CHUNK_SIZE = 64 * 1024
"""Default Set Chunk Size limit before a publish is accepted (a chunk larger than the largest
message is of no use)."""
PRE_PUBLISH_MAX_CHUNK_STREAMS = 8
"""Default chunk stream limit before a publish is accepted (encoders use 3 to 6)."""


class RTMPServerConnection:
    """Server side of one RTMP connection, without I/O (see the module docstring).

    The keyword arguments are hard limits against misbehaving peers: a message longer than
    ``max_message_size``, a Set Chunk Size above ``max_chunk_size``, more than
    ``max_chunk_streams`` chunk stream ids or AMF0 values nested deeper than ``max_amf_depth``
    (at most :data:`~ingest.rtmp.amf0.MAX_DEPTH_LIMIT`) raise :class:`RTMPProtocolError`.
    The three size limits apply once a publish is accepted; before that the ``pre_publish_*``
    ones do (each at most the corresponding full limit), so a peer that has proved nothing
    holds at most about ``2 * pre_publish_max_message_size`` bytes.
    ``out_chunk_size`` is announced to the peer with Set Chunk Size when the connect is
    accepted; ``window_ack_size`` is our Window Acknowledgement Size and peer bandwidth.
    """

    def __init__(
        self,
        *,
        max_message_size: int = 16 * 1024 * 1024,
        max_chunk_size: int = 16 * 1024 * 1024,
        max_chunk_streams: int = 64,
        out_chunk_size: int = 4096,
        window_ack_size: int = 2_500_000,
        max_amf_depth: int = 32,
        pre_publish_max_message_size: int = PRE_PUBLISH_MAX_MESSAGE_SIZE,
        pre_publish_max_chunk_size: int = PRE_PUBLISH_MAX_CHUNK_SIZE,
        pre_publish_max_chunk_streams: int = PRE_PUBLISH_MAX_CHUNK_STREAMS,
    ) -> None:
        for name, value in (
            ("max_message_size", max_message_size),
            ("max_chunk_size", max_chunk_size),
            ("max_chunk_streams", max_chunk_streams),
            ("window_ack_size", window_ack_size),
            ("pre_publish_max_message_size", pre_publish_max_message_size),
            ("pre_publish_max_chunk_size", pre_publish_max_chunk_size),
            ("pre_publish_max_chunk_streams", pre_publish_max_chunk_streams),
        ):
            if value < 1:
                raise ValueError(f"{name} must be positive, not {value}")
        if not 1 <= max_amf_depth <= amf0.MAX_DEPTH_LIMIT:
            raise ValueError(f"max_amf_depth must be in 1..{amf0.MAX_DEPTH_LIMIT}")
        if not 1 <= out_chunk_size <= _MAX_CHUNK_SIZE_FIELD:
            raise ValueError(f"out_chunk_size must be in 1..{_MAX_CHUNK_SIZE_FIELD}")
        self._full_limits = (
            max_message_size,
            min(max_chunk_size, _MAX_CHUNK_SIZE_FIELD),
            max_chunk_streams,
        )
        self._max_chunk_size = min(pre_publish_max_chunk_size, self._full_limits[1])
        self._out_chunk_size = out_chunk_size
        self._window_ack_size = window_ack_size
        self._buffer = ReceiveBuffer()
        self._handshake = ServerHandshake()
        self._reader = ChunkReader(
            max_message_size=min(pre_publish_max_message_size, max_message_size),
            max_chunk_streams=min(pre_publish_max_chunk_streams, max_chunk_streams),
        )
        self._writer = ChunkWriter()
        self._out = bytearray()
        self._state = ConnectionState()
        self._commands = CommandHandler(
            self._send_message, self._state, max_amf_depth=max_amf_depth
        )
        self._max_amf_depth = max_amf_depth
        self._events: list[Event] = []
        self._bytes_received = 0
        self._peer_window: int | None = None
        self._last_ack = 0
        self._close_reason: str | None = None

    # -- state --------------------------------------------------------------------------------

    @property
    def bytes_received(self) -> int:
        """Every byte passed to :meth:`receive_data` so far (handshake included)."""
        return self._bytes_received

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for input the peer has not finished: what waits in the receive buffer (at
        most one incomplete chunk or handshake packet) plus the partly received messages of all
        chunk streams (at most ``max_message_size``)."""
        return len(self._buffer) + self._reader.unfinished_bytes

    @property
    def state(self) -> State:
        """Where the connection is in its life (see :mod:`ingest.rtmp.state`)."""
        return self._state.state

    @property
    def handshake_completed(self) -> bool:
        """Whether the C0/C1/C2 handshake is over."""
        return self._handshake.done

    @property
    def close_reason(self) -> str | None:
        """Why the connection is dead (protocol error or :meth:`close`), or ``None``."""
        return self._close_reason

    def close(self, reason: str = "closed by the server") -> None:
        """Mark the connection closed (e.g. after a rejection); later input is refused."""
        if self._close_reason is None:
            self._close_reason = reason

    # -- input --------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed bytes from the peer; return the events they complete.

        Raises :class:`RTMPProtocolError` (and nothing else) if the peer broke the protocol;
        the connection is then dead and every later call raises too. The error's ``events``
        are those this call parsed before it. After a ``publish`` nothing more is parsed until
        :meth:`accept_publish` or :meth:`reject_publish`; then call again (with ``b""`` if
        nothing new arrived) to read what waited. Replies (handshake,
        acknowledgements, pongs, automatic command results) wait in :meth:`data_to_send`.
        """
        if self._close_reason is not None:
            raise RTMPProtocolError(f"RTMP connection is closed: {self._close_reason}")
        self._bytes_received += data.nbytes if isinstance(data, memoryview) else len(data)
        events: list[Event] = []
        self._events = events
        try:
            self._buffer.parse(data, self._parse)
        except RTMPProtocolError as exc:
            self._close_reason = str(exc)
            exc.events = tuple(events)
            raise
        self._acknowledge()
        return events

    def data_to_send(self) -> bytes:
        """Return and clear the bytes queued for the peer."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def _parse(self, data: memoryview, pos: int) -> int:
        if not self._handshake.done:
            pos = self._handshake.receive(data, pos, self._out)
            if not self._handshake.done:
                return pos
            self._state.handshake_completed()
            self._events.append(HandshakeCompleted())
        read_message = self._reader.read_message
        state = self._state
        while True:
            if state.state is State.PUBLISH_REQUESTED:
                return pos  # paused until accept_publish/reject_publish
            message, pos = read_message(data, pos)
            if message is None:
                return pos
            self._dispatch(message)

    def _dispatch(self, message: RawMessage) -> None:
        type_id = message.type_id
        if type_id == MessageType.AUDIO or type_id == MessageType.VIDEO:
            self._events.append(
                MediaReceived(message.stream_id, type_id, message.timestamp, message.payload)
            )
        elif type_id == MessageType.COMMAND_AMF0:
            self._report(self._commands.handle(message.stream_id, message.payload))
        elif type_id == MessageType.COMMAND_AMF3:
            # RTMP 7.1.1: AMF3 commands start with a 0 format byte; the rest is AMF0 in practice.
            self._report(self._commands.handle(message.stream_id, message.payload[1:]))
        elif type_id == MessageType.DATA_AMF0:
            self._report(metadata_event(message.stream_id, message.payload, self._max_amf_depth))
        elif type_id == MessageType.DATA_AMF3:
            body = message.payload[1:]
            self._report(metadata_event(message.stream_id, body, self._max_amf_depth))
        elif type_id <= MessageType.SET_PEER_BANDWIDTH:
            self._handle_control(message)
        # Anything else (shared objects, aggregates, unknown types) is ignored.

    def _report(self, event: Event | None) -> None:
        if event is not None:
            self._events.append(event)

    # -- protocol control (RTMP 5.4, 6.2) -----------------------------------------------------

    def _handle_control(self, message: RawMessage) -> None:
        payload = message.payload
        match message.type_id:
            case MessageType.SET_CHUNK_SIZE:
                self._set_chunk_size(read_u32(payload, "Set Chunk Size"))
            case MessageType.ABORT:
                self._reader.abort(read_u32(payload, "Abort"))
            case MessageType.ACKNOWLEDGEMENT:
                sequence = read_u32(payload, "Acknowledgement")
                self._events.append(AcknowledgementReceived(sequence))
            case MessageType.USER_CONTROL:
                self._handle_user_control(payload)
            case MessageType.WINDOW_ACK_SIZE:
                window = read_u32(payload, "Window Acknowledgement Size")
                self._peer_window = window or None
            case MessageType.SET_PEER_BANDWIDTH:
                pass  # RTMP 5.4.5: limits what we send; we send little, so it is ignored.

    def _set_chunk_size(self, size: int) -> None:
        # RTMP 5.4.1: 31-bit size, at least 1; the limit bounds what one chunk may buffer.
        if size > _MAX_CHUNK_SIZE_FIELD:
            raise RTMPProtocolError(f"RTMP Set Chunk Size {size:#x} has the top bit set")
        if not 1 <= size <= self._max_chunk_size:
            raise RTMPProtocolError(
                f"RTMP Set Chunk Size {size} is outside 1..{self._max_chunk_size}"
            )
        self._reader.chunk_size = size

    def _handle_user_control(self, payload: bytes) -> None:
        event, data = read_user_control(payload)
        if event == UserControlEvent.PING_REQUEST:
            # RTMP 7.1.7: answer a PingRequest with a PingResponse carrying its timestamp.
            if len(data) < 4:
                raise RTMPProtocolError("RTMP PingRequest is truncated")
            body = user_control(UserControlEvent.PING_RESPONSE, data[:4])
            self._send_message(CONTROL_CSID, MessageType.USER_CONTROL, 0, body)
        # StreamBegin, SetBufferLength, PingResponse... need no answer from a server.

    def _acknowledge(self) -> None:
        # RTMP 5.4.3: once the peer announced its window, acknowledge each window received.
        window = self._peer_window
        if window is not None and self._bytes_received - self._last_ack >= window:
            self._last_ack = self._bytes_received
            body = u32(self._bytes_received)
            self._send_message(CONTROL_CSID, MessageType.ACKNOWLEDGEMENT, 0, body)

    # -- output -------------------------------------------------------------------------------

    def _send_message(self, csid: int, type_id: int, stream_id: int, payload: bytes) -> None:
        self._writer.write(
            self._out, csid=csid, type_id=type_id, stream_id=stream_id, payload=payload
        )

    def accept_connect(self, transaction_id: float) -> None:
        """Accept ``connect``: Window Ack Size, Set Peer Bandwidth, Set Chunk Size, ``_result``.

        Like nginx-rtmp and SRS, the result carries ``fmsVer``/``capabilities`` and
        ``NetConnection.Connect.Success``.
        """
        window = u32(self._window_ack_size)
        self._send_message(CONTROL_CSID, MessageType.WINDOW_ACK_SIZE, 0, window)
        bandwidth = window + bytes((PeerBandwidthLimit.DYNAMIC,))
        self._send_message(CONTROL_CSID, MessageType.SET_PEER_BANDWIDTH, 0, bandwidth)
        chunk_size = u32(self._out_chunk_size)
        self._send_message(CONTROL_CSID, MessageType.SET_CHUNK_SIZE, 0, chunk_size)
        self._writer.chunk_size = self._out_chunk_size
        self._commands.connect_result(transaction_id)

    def use_full_limits(self) -> None:
        """Raise the size limits from the ``pre_publish_*`` ones to the configured ones (the
        peer proved a stream key). Called by :meth:`accept_publish`; idempotent."""
        max_message_size, max_chunk_size, max_chunk_streams = self._full_limits
        self._max_chunk_size = max_chunk_size
        self._reader.set_limits(
            max_message_size=max_message_size, max_chunk_streams=max_chunk_streams
        )

    def reject_connect(
        self, transaction_id: float, description: str = "Connection rejected."
    ) -> None:
        """Reject ``connect`` with ``_error`` / ``NetConnection.Connect.Rejected``."""
        self._commands.connect_error(transaction_id, description)

    def accept_publish(self, stream_id: int) -> None:
        """Accept a publish: StreamBegin and ``onStatus`` ``NetStream.Publish.Start`` on the
        message stream ``stream_id`` the publish arrived on. From now on the full size limits
        apply (:meth:`use_full_limits`)."""
        self._state.server_decision("accept_publish")
        if self._state.state is State.PUBLISHING:
            self.use_full_limits()
        body = user_control(UserControlEvent.STREAM_BEGIN, u32(stream_id))
        self._send_message(CONTROL_CSID, MessageType.USER_CONTROL, 0, body)
        name = self._commands.publishing_name(stream_id)
        self.send_status(
            stream_id,
            "status",
            "NetStream.Publish.Start",
            f"{name} is now published.",
            details=name,
        )

    def reject_publish(
        self,
        stream_id: int,
        code: str = "NetStream.Publish.BadName",
        description: str = "Publishing rejected.",
    ) -> None:
        """Refuse a publish with an error ``onStatus`` on ``stream_id``; the caller then
        usually flushes :meth:`data_to_send` and closes."""
        self._state.server_decision("reject_publish")
        self._commands.forget_publish(stream_id)
        self.send_status(stream_id, "error", code, description)

    def send_status(
        self,
        stream_id: int,
        level: str,
        code: str,
        description: str,
        *,
        details: str | None = None,
    ) -> None:
        """Queue ``onStatus(0, null, {level, code, description[, details]})`` on message
        stream ``stream_id`` (e.g. ``NetStream.Play.Failed`` to refuse a play)."""
        info: dict[str, Any] = {"level": level, "code": code, "description": description}
        if details is not None:
            info["details"] = details
        self._commands.send_status(stream_id, info)
