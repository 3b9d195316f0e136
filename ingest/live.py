"""The seam between a publishing connection and the live path of its stream.

A live path (implemented by ``workers``) owns everything live of one stream: its publisher, its
hub and outputs, its reconnect window and its deadline. A connection never registers itself
anywhere: it asks :class:`PathAdmission` to admit it with a stream key, gets the
:class:`PublishedPath` it feeds, and leaves it when its publisher goes. The path, in turn, may
end the connection through the :class:`Publisher` interface, and that is all either side knows
of the other.
"""

from __future__ import annotations

from typing import Literal, Protocol

from ingest.hub import StreamHub

EndReason = Literal[
    "publisher_left",
    "completed",
    "disabled",
    "reset",
    "timed_out",
    "deleted",
    "max_duration",
    "shutdown",
    "draining",
    "error",
    "lease_lost",
    "replaced",
]
"""Why a live session ended: the publisher stopped (or its reconnect window ran out), the
operator completed/disabled/reset/deleted the stream, the publisher timed out, the session hit
its maximum duration, the server shut down, the node was drained (``liverelay drain`` or
SIGTERM: the publisher should publish again, to reach another node), no output could start,
this node lost the stream's ownership lease (another node took it over, or the lease could
not be renewed, e.g. with the database unreachable), or a newer publish of the stream on
another node asked this node to hand it over."""

END_MESSAGES: dict[EndReason, str] = {
    "publisher_left": "the publisher stopped",
    "completed": "the live stream was completed",
    "disabled": "the live stream was disabled",
    "reset": "the stream key was reset",
    "timed_out": "no data from the publisher",
    "deleted": "the live stream was deleted",
    "max_duration": "the session reached its maximum duration",
    "shutdown": "the server is shutting down",
    "draining": "the server is draining: publish again to reach another node",
    "error": "the stream could not be processed",
    "lease_lost": "the stream is no longer owned by this server",
    "replaced": "a newer publish of the stream on another node took it over",
}
"""What a publisher is told (in ``onStatus``) when the server ends its publish."""


class LiveElsewhere(Exception):
    """The stream is live on another node (it holds the stream's ownership lease); the message
    is safe to send to the client."""


class AdmissionClosed(Exception):
    """The node admits no new publishers: it is draining or shutting down (:attr:`reason`).
    The message is what the refused publisher is told."""

    def __init__(self, reason: EndReason) -> None:
        super().__init__(END_MESSAGES[reason])
        self.reason: EndReason = reason


class Publisher(Protocol):
    """A connection publishing into a live path, as the path sees it (an RTMP
    :class:`~ingest.publisher.PublisherConnection`)."""

    @property
    def client_address(self) -> str:
        """``host:port`` of the publisher."""
        ...

    def disconnect(self, reason: EndReason) -> None:
        """The path let this publisher go (the operator ended the stream, the session reached
        its maximum duration, a newer publisher with the same key replaced it, the server is
        stopping): tell the peer why and close its connection. The publisher is no longer the
        path's; it must not feed or leave the path afterwards."""
        ...


class PublishedPath(Protocol):
    """What a publishing connection may do with the live path it was admitted to."""

    @property
    def stream_id(self) -> str:
        """Public id of the stream."""
        ...

    @property
    def hub(self) -> StreamHub:
        """Where the publisher's media goes."""
        ...

    async def leave(self, publisher: Publisher, *, clean: bool, reason: EndReason) -> None:
        """``publisher`` stopped: ``clean`` after an unpublish (the session ends now), not after
        a dropped connection (the session may wait for the publisher to come back). Nothing
        happens if ``publisher`` is no longer the path's."""
        ...


class PathAdmission(Protocol):
    """Admits publishers to live paths (implemented by ``workers``)."""

    async def admit(self, stream_key: str, publisher: Publisher) -> PublishedPath:
        """Check ``stream_key`` and make ``publisher`` the publisher of its stream's path, as
        one step: nothing that ends the stream can come between the check and the admission.
        Raises :class:`~ingest.authorizer.PublishDenied` for a refused key,
        :class:`LiveElsewhere` while another node owns the stream, :class:`AdmissionClosed`
        when the node takes no publishers any more; any other error means the publish cannot
        be admitted now."""
        ...
