"""Which commands a peer may send when: the connection's states and transitions, as tables.

One place lists what may happen in each state (the habit of h11's ``_state.py``): a command
the table does not allow in the current state is a protocol error, so no later code has to
check whether ``connect`` came first. The peer's commands move the state when they arrive;
the server's decisions (accepting or refusing a publish) move it when its user makes them.

The order real publishers use (ffmpeg, OBS, GStreamer; FMLE style)::

    connect -> [releaseStream, FCPublish] -> createStream -> publish -> media ...
            -> [FCUnpublish] -> deleteStream

``releaseStream``/``FCPublish`` come before ``createStream`` (ffmpeg, OBS) or after it, with
transaction id 0 (GStreamer). A client that does not wait for the ``connect`` result gets its
events in order all the same, so the publish rules judge the application before the publish.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from ingest.rtmp.errors import RTMPProtocolError

__all__ = ["KNOWN_COMMANDS", "OTHER_COMMAND", "ConnectionState", "State"]


class State(enum.Enum):
    """Where an RTMP server connection is in its life."""

    HANDSHAKE = "handshake"
    """C0/C1/C2 not complete yet: no command can arrive."""
    AWAITING_CONNECT = "awaiting connect"
    """Handshake done; the only command allowed is ``connect``."""
    CONNECTED = "connected"
    """``connect`` received (its user accepts or refuses it before any later event)."""
    STREAM_CREATED = "stream created"
    """``createStream`` answered: ``publish`` (or ``play``, which its user refuses) may
    follow."""
    PUBLISH_REQUESTED = "publish requested"
    """``publish`` received, its user has not decided yet."""
    PUBLISHING = "publishing"
    """Its user accepted the publish: media flows and the full size limits apply."""


OTHER_COMMAND = "*"
"""Stands for every command the connection does not handle itself (``_checkbw``,
``getStreamLength``...); its user receives those as ``CommandReceived``."""

_UNPUBLISH = ("FCUnpublish", "closeStream", "deleteStream")
_FMLE = ("releaseStream", "FCPublish")
KNOWN_COMMANDS = frozenset(("connect", "createStream", "publish", "play", *_FMLE, *_UNPUBLISH))
"""The commands the tables name; any other command is looked up as :data:`OTHER_COMMAND`."""


def _stay(state: State, *commands: str) -> dict[str, State]:
    return dict.fromkeys(commands, state)


PEER_TRANSITIONS: Mapping[State, Mapping[str, State]] = {
    State.HANDSHAKE: {},
    State.AWAITING_CONNECT: {"connect": State.CONNECTED},
    State.CONNECTED: {
        **_stay(State.CONNECTED, *_FMLE, *_UNPUBLISH, OTHER_COMMAND),
        "createStream": State.STREAM_CREATED,
    },
    # play is reported for its user to refuse (liverelay plays over HLS).
    State.STREAM_CREATED: {
        **_stay(State.STREAM_CREATED, *_FMLE, "createStream", "play", *_UNPUBLISH, OTHER_COMMAND),
        "publish": State.PUBLISH_REQUESTED,
    },
    # Nothing is parsed while the server decides on a publish (RTMPServerConnection pauses).
    State.PUBLISH_REQUESTED: {},
    # A second publish is its user's to refuse ("already publishing"); an unpublish ends
    # the publish.
    State.PUBLISHING: {
        **_stay(State.PUBLISHING, *_FMLE, "createStream", "publish", "play", OTHER_COMMAND),
        **_stay(State.STREAM_CREATED, *_UNPUBLISH),
    },
}
"""state -> command name -> next state; a command missing from its state's table (and not
covered by :data:`OTHER_COMMAND`) is a protocol error."""

SERVER_TRANSITIONS: Mapping[tuple[State, str], State] = {
    (State.PUBLISH_REQUESTED, "accept_publish"): State.PUBLISHING,
    (State.PUBLISH_REQUESTED, "reject_publish"): State.STREAM_CREATED,
    (State.PUBLISHING, "reject_publish"): State.PUBLISHING,  # a second publish refused
}
"""(state, the server's decision) -> next state; any other pair leaves the state alone."""

_PREREQUISITE = {
    State.AWAITING_CONNECT: "connect",
    State.CONNECTED: "createStream",
}
"""What the peer should have sent first, for the error message of a command out of order."""


class ConnectionState:
    """The state of one connection, moved only through the tables above."""

    def __init__(self) -> None:
        self.state = State.HANDSHAKE
        """The current state."""

    def handshake_completed(self) -> None:
        """C0/C1/C2 are done: commands may arrive."""
        if self.state is State.HANDSHAKE:
            self.state = State.AWAITING_CONNECT

    def peer_command(self, name: str) -> None:
        """The peer sent command ``name``: move on, or raise :class:`RTMPProtocolError` if the
        current state does not allow it."""
        key = name if name in KNOWN_COMMANDS else OTHER_COMMAND
        following = PEER_TRANSITIONS[self.state].get(key)
        if following is None:
            raise RTMPProtocolError(self._out_of_order(name))
        self.state = following

    def server_decision(self, decision: str) -> None:
        """The server made ``decision`` (``accept_publish`` or ``reject_publish``)."""
        self.state = SERVER_TRANSITIONS.get((self.state, decision), self.state)

    def _out_of_order(self, name: str) -> str:
        if name == "connect":
            return "RTMP connect after connect"
        prerequisite = _PREREQUISITE.get(self.state)
        if prerequisite is not None:
            return f"RTMP {name} before {prerequisite}"
        return f"RTMP {name} is not allowed in state {self.state.value}"
