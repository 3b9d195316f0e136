"""The publish rules of one RTMP connection: turn its protocol events into admission and hub
calls.

A :class:`PublisherConnection` is one connection, not a live session (a live session is one
publish of a stream, owned by its live path, which a reconnecting publisher may continue). It
knows nothing about sockets (:mod:`ingest.server` and :mod:`ingest.transport` feed it the
events of its sans-IO connection and send the replies it queues), nothing about the database
and nothing about ffmpeg: a
:class:`~ingest.live.PathAdmission` checks the stream key and admits the connection to the
live path of its stream, whose hub receives the media. The path may end the publish from
outside (:meth:`PublisherConnection.disconnect`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from config.logs import stream_id_var
from ingest.authorizer import PublishDenied
from ingest.hub import MediaRefused, StreamHub
from ingest.limits import CloseReason
from ingest.live import (
    END_MESSAGES,
    AdmissionClosed,
    EndReason,
    LiveElsewhere,
    PathAdmission,
    PublishedPath,
)
from ingest.rtmp.connection import RTMPServerConnection
from ingest.rtmp.events import (
    ConnectRequested,
    Event,
    MediaReceived,
    MetadataReceived,
    PlayRequested,
    PublishRequested,
    UnpublishRequested,
)

log = logging.getLogger(__name__)

APP_NAME = "live"


class EndConnection(Exception):
    """The publish rules end the connection; the message is the logged reason (never a
    stream key) and :attr:`reason` its stable name for counters."""

    def __init__(self, message: str, reason: CloseReason) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class _Publishing:
    stream_id: int
    """The RTMP message stream of the publish."""
    path: PublishedPath
    hub: StreamHub


class PublisherConnection:
    """The publish rules of one RTMP connection: handles its events and is the
    :class:`~ingest.live.Publisher` its live path sees."""

    def __init__(
        self,
        conn: RTMPServerConnection,
        *,
        client_address: str,
        admission: PathAdmission,
        close_transport: Callable[[], None],
    ) -> None:
        self.conn = conn
        self._client_address = client_address
        self._admission = admission
        self._close_transport = close_transport
        self._publishing: _Publishing | None = None
        self._ended = False

    @property
    def client_address(self) -> str:
        """``host:port`` of the peer."""
        return self._client_address

    @property
    def publishing(self) -> bool:
        """Whether a publish was accepted and is running."""
        return self._publishing is not None

    @property
    def ended(self) -> bool:
        """Whether this connection's publish has ended (the connection has nothing left to
        do)."""
        return self._ended

    def handle_now(self, event: Event) -> bool:
        """React to ``event`` if that needs no waiting (media, metadata, connect, play), and
        say so; ``False`` means it must go to :meth:`handle`. Raises :class:`EndConnection` to
        end the connection. Runs for every media message, so media is tested first."""
        if event.__class__ is MediaReceived:
            if self._publishing is not None:
                media: MediaReceived = event  # type: ignore[assignment]
                try:
                    self._publishing.hub.publish_media(media.kind, media.timestamp, media.payload)
                except MediaRefused as exc:
                    raise self._refused_media(exc) from None
            return True
        if isinstance(event, PublishRequested | UnpublishRequested):
            return False
        if isinstance(event, MetadataReceived):
            if self._publishing is not None:
                try:
                    self._publishing.hub.publish_metadata(event.payload, event.metadata)
                except MediaRefused as exc:
                    raise self._refused_media(exc) from None
        elif isinstance(event, ConnectRequested):
            self._on_connect(event)
        elif isinstance(event, PlayRequested):
            self.conn.send_status(
                event.stream_id,
                "error",
                "NetStream.Play.Failed",
                "RTMP playback is not offered; play the stream over HLS",
            )
            raise EndConnection("play requested", CloseReason.PLAY_REFUSED)
        return True

    async def handle(self, event: Event) -> None:
        """React to one protocol event; raises :class:`EndConnection` to end the connection."""
        if isinstance(event, PublishRequested):
            await self._on_publish(event)
        elif isinstance(event, UnpublishRequested):
            await self._on_unpublish(event)
        else:
            self.handle_now(event)

    def _on_connect(self, event: ConnectRequested) -> None:
        app = event.app.strip("/")
        if app != APP_NAME:
            self.conn.reject_connect(event.transaction_id, f"unknown application '{app}'")
            # Not logged: a misconfigured encoder may put its stream key in the app name.
            raise EndConnection("connect to an unknown application", CloseReason.BAD_APP)
        self.conn.accept_connect(event.transaction_id)

    async def _on_publish(self, event: PublishRequested) -> None:
        if self._publishing is not None:
            self._reject(
                event,
                "NetStream.Publish.BadName",
                "already publishing",
                CloseReason.ALREADY_PUBLISHING,
            )
        try:
            path = await self._admission.admit(event.name, self)
        except PublishDenied as exc:
            self._reject(event, "NetStream.Publish.BadName", str(exc), CloseReason.BAD_KEY)
        except LiveElsewhere as exc:
            self._reject(event, "NetStream.Publish.BadName", str(exc), CloseReason.LIVE_ELSEWHERE)
        except AdmissionClosed as exc:  # draining or stopping: not the publisher's fault
            closing = CloseReason.DRAINING if exc.reason == "draining" else CloseReason.SHUTDOWN
            self._reject(event, "NetStream.Publish.Failed", str(exc), closing)
        except Exception as exc:  # the key's backend is down, or the outputs cannot start
            log.error("cannot admit a publish from %s: %s", self.client_address, type(exc).__name__)
            self._reject(
                event,
                "NetStream.Publish.Failed",
                "service temporarily unavailable, try again",
                CloseReason.AUTH_UNAVAILABLE,
            )
        stream_id_var.set(path.stream_id)  # this connection's task logs for the stream
        self._publishing = _Publishing(event.stream_id, path, path.hub)
        self.conn.accept_publish(event.stream_id)
        log.info("stream %s: publishing from %s", path.stream_id, self.client_address)

    def _reject(
        self, event: PublishRequested, code: str, reason: str, counter: CloseReason
    ) -> NoReturn:
        self.conn.reject_publish(event.stream_id, code=code, description=reason)
        log.warning("publish refused from %s: %s", self.client_address, reason)
        raise EndConnection(f"publish refused: {reason}", counter)

    def _refused_media(self, exc: MediaRefused) -> EndConnection:
        """The hub refused what the publisher sent: a protocol error that ends this publish
        (the connection closes; the stream's other outputs and other streams go on)."""
        assert self._publishing is not None
        log.warning(
            "stream %s: publisher from %s closed: %s",
            self._publishing.path.stream_id,
            self.client_address,
            exc,
        )
        return EndConnection(f"protocol error: {exc}", CloseReason.PROTOCOL_ERROR)

    async def _on_unpublish(self, event: UnpublishRequested) -> None:
        if self._publishing is None:
            return
        if event.command == "FCUnpublish" or event.stream_id in (0, self._publishing.stream_id):
            await self.finish(
                clean=True, reason="publisher_left", detail=f"publisher sent {event.command}"
            )

    def disconnect(self, reason: EndReason) -> None:
        """The path ended this publish (operator, maximum duration, replaced by a newer
        publisher, shutdown): tell the peer why, then close the connection."""
        publishing, self._publishing = self._publishing, None
        self._ended = True
        if publishing is not None:
            message = END_MESSAGES[reason]
            self.conn.send_status(
                publishing.stream_id, "status", "NetStream.Unpublish.Success", message
            )
            log.info(
                "stream %s: publish from %s ended (disconnected: %s)",
                publishing.path.stream_id,
                self.client_address,
                message,
            )
        self._close_transport()

    async def finish(self, *, clean: bool, reason: EndReason, detail: str) -> None:
        """End the publish once (idempotent) and tell the path its publisher left. ``clean``
        (an unpublish) ends the live session now; otherwise the path may wait for the publisher
        to reconnect."""
        publishing, self._publishing = self._publishing, None
        if publishing is None or self._ended:
            return
        self._ended = True
        log.info(
            "stream %s: publish from %s ended (%s)",
            publishing.path.stream_id,
            self.client_address,
            detail,
        )
        await publishing.path.leave(self, clean=clean, reason=reason)
