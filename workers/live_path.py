"""One live path: everything live of one stream on this node, from its first publish to its end.

A path owns its publisher (the connection feeding it), its hub and outputs
(:class:`~workers.path_outputs.PathOutputs`), its reconnect window, its maximum-duration
deadline and the record of its session (:class:`~workers.events.SessionInfo`, reported through
:class:`~workers.events.StreamEvents`). It outlives a dropped publisher for the stream's
reconnect window: the hub stays open, the outputs keep running, and a publisher with the same
key inside the window continues the same session (the HLS output starts a new ffmpeg run marked
with ``EXT-X-DISCONTINUITY``; the recording stays one recording; restream targets keep their
connection).

A path never ends itself directly: a clean unpublish, the window running out and the deadline
ask the registry (:class:`~workers.live_paths.LivePaths`), which ends paths one at a time per
stream and only while the path is still in the state the request was made in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from config.settings import Settings
from ingest.authorizer import PublishGrant, RestreamTarget
from ingest.hub import StreamHub
from ingest.live import EndReason, Publisher
from workers.events import RestreamState, Resumed, SessionInfo, StreamEvents
from workers.path_outputs import PathOutputs
from workers.recording import RecordingStore
from workers.storage import RecordingStorage
from workers.supervisor import OutputState, OutputStatus

log = logging.getLogger(__name__)

RequestEnd = Callable[["LivePath", EndReason, Callable[[], bool]], Awaitable[None]]
"""Asks the registry to end a path for a reason, if the condition still holds once it may."""


class LivePath:
    """Everything live of one stream (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        ffmpeg: str,
        grant: PublishGrant,
        info: SessionInfo,
        directory: Path,
        events: StreamEvents,
        request_end: RequestEnd,
        recordings: RecordingStore | None = None,
        storage: RecordingStorage | None = None,
        resumed: Resumed | None = None,
        drain_hands_over: bool = False,
    ) -> None:
        """``resumed``: the session (``info``) was begun by an earlier owner of the stream and
        continues here, with its recording. ``drain_hands_over``: other nodes can continue the
        session (a database shared with them), so a drain hands it over (:meth:`finish`)."""
        self.grant = grant
        """The grant the session began with (its window and maximum duration hold)."""
        self.info = info
        self.publisher: Publisher | None = None
        """The connection feeding the path; ``None`` while it waits in its reconnect window."""
        self.lease_generation = info.lease_generation or 0
        """The generation of the stream's ownership lease this node holds for the session (the
        same through reconnects)."""
        self.client_address = info.client_address
        """The current (or last) publisher's address."""
        self.reconnects = resumed.reconnects if resumed is not None else 0
        self.resumed = resumed is not None
        """Whether the session continues one an earlier owner began."""
        self.opened_at = time.time()
        """Unix time this node began the path (``info.started_at`` for a new session; a
        continued session began earlier, on its earlier owner)."""
        self.ended = asyncio.Event()
        self.handed_over = False
        """Whether the path ended by handing its session over to the stream's next owner."""
        self._drain_hands_over = drain_hands_over
        self._storage = storage
        self._hub = StreamHub(grant.stream_id, queue_bytes=settings.hub_queue_bytes)
        self.outputs = PathOutputs(
            settings,
            ffmpeg=ffmpeg,
            hub=self._hub,
            grant=grant,
            session_tag=f"{info.session_id[-8:]}-{self.lease_generation}",
            started_at=info.started_at,
            directory=directory,
            on_restream_change=self._restream_changed,
            recordings=recordings,
            storage=storage,
            session_id=info.session_id,
            generation=info.lease_generation,
            resume_recording=resumed.recording_id if resumed is not None else None,
        )
        self._events = events
        self._request_end = request_end
        self._background: set[asyncio.Task[None]] = set()
        self._window: asyncio.Task[None] | None = None
        self._deadline: asyncio.Task[None] | None = None
        self._ending: asyncio.Future[None] | None = None

    # -- what publishers and the API read ---------------------------------------------------

    @property
    def stream_id(self) -> str:
        """Public id of the stream."""
        return self.grant.stream_id

    @property
    def hub(self) -> StreamHub:
        """The stream's hub: the publisher's media in, the outputs' subscriptions out."""
        return self._hub

    @property
    def reconnecting(self) -> bool:
        """The publisher dropped and the path waits for it inside the reconnect window."""
        return self._window is not None and not self._window.done()

    @property
    def ending(self) -> bool:
        """The path is ending or has ended."""
        return self._ending is not None

    def output_statuses(self) -> Iterator[tuple[OutputStatus, int]]:
        """Each running output's status and the frames it dropped because it lagged."""
        return self.outputs.statuses()

    # -- publishers (called by the registry, under its lock for the stream) -------------------

    def begin(self, publisher: Publisher) -> None:
        """The first publisher: start the outputs once the hub knows the tracks, record the
        session, arm the maximum-duration deadline."""
        self.publisher = publisher
        self._hub.begin_publisher()
        self.outputs.start()
        if not self.resumed:  # a continued session's row and reconnect are recorded already
            self._spawn(self._events.session_started(self.info))
        self._deadline = asyncio.create_task(self._end_at_max_duration())

    @property
    def continues(self) -> bool:
        """Whether a new publisher continues this session (the stream has a reconnect window);
        otherwise the session ends and the new publisher begins another."""
        return self.grant.reconnect_window_seconds > 0 and self._ending is None

    def take_over(self, grant: PublishGrant, publisher: Publisher) -> None:
        """A publisher with the stream's key continues the session: it comes back inside the
        window, or replaces a stale publisher (OBS reconnecting before the server noticed that
        the old connection died), which is disconnected first."""
        stale, self.publisher = self.publisher, publisher
        if stale is not None:
            log.info(
                "stream %s: new publisher from %s replaces %s",
                self.stream_id,
                publisher.client_address,
                stale.client_address,
            )
            stale.disconnect("publisher_left")
        if self._window is not None:
            self._window.cancel()
            self._window = None
        self.reconnects += 1
        self.client_address = publisher.client_address
        self._hub.begin_publisher()
        self.outputs.roll_over()
        self.outputs.set_restream(grant.restream)
        log.info("stream %s: publisher reconnected from %s", self.stream_id, self.client_address)
        self._spawn(self._events.session_reconnected(self.info, self.client_address))

    async def leave(self, publisher: Publisher, *, clean: bool, reason: EndReason) -> None:
        """``publisher`` stopped. A clean stop ends the session; a dropped publisher gets the
        stream's reconnect window first (none when it is 0). Nothing happens if ``publisher``
        is no longer this path's (replaced, or the path ended)."""
        if publisher is not self.publisher or self._ending is not None:
            return
        self.publisher = None
        window = self.grant.reconnect_window_seconds
        if clean or window <= 0:
            await self._request_end(self, reason, self._has_no_publisher)
            return
        log.info(
            "stream %s: publisher gone; waiting %g s for it to reconnect", self.stream_id, window
        )
        self._window = asyncio.create_task(self._end_after_window(window, reason))

    def _has_no_publisher(self) -> bool:
        return self.publisher is None

    async def _end_after_window(self, window: float, reason: EndReason) -> None:
        await asyncio.sleep(window)
        log.info("stream %s: no reconnect within %g s", self.stream_id, window)
        await self._request_end(self, reason, self._has_no_publisher)

    async def _end_at_max_duration(self) -> None:
        await asyncio.sleep(self.grant.max_duration_seconds)
        log.warning(
            "stream %s: session reached its maximum duration of %g s",
            self.stream_id,
            self.grant.max_duration_seconds,
        )
        await self._request_end(self, "max_duration", _always)

    # -- the end (called by the registry only) ------------------------------------------------

    async def finish(self, reason: EndReason) -> None:
        """End the path now: disconnect its publisher, flush the outputs, close the playlist
        with ENDLIST and the recording, report the end. Safe to call more than once (later
        calls wait); a cancelled caller does not stop it. A path ``replaced`` by a newer
        publish on another node hands its session over when the stream has a reconnect
        window: the recording is stored but stays open and the session is not ended, so that
        node continues both. So does a path ended by a drain (``draining``) of a node that
        shares its database with others, when its recording (if any) is in storage that every
        node reaches: its publisher, told to publish again, reaches another node, which
        continues the session inside the window (a recording on this node's disk could not be
        continued: such a session ends, as on a node alone)."""
        if self._ending is None:
            self._ending = asyncio.ensure_future(self._finish(reason))
        await asyncio.shield(self._ending)

    async def _finish(self, reason: EndReason) -> None:
        publisher, self.publisher = self.publisher, None
        if publisher is not None:
            publisher.disconnect(reason)
        current = asyncio.current_task()
        for task in (self._window, self._deadline):
            if task is not None and task is not current:
                task.cancel()
        self._hub.close()
        hand_over = self._hands_over(reason)
        await self.outputs.stop(hand_over=hand_over)
        ended_at = time.time()
        # The session's earlier reports first: the end is written after the start (both would
        # create the session's row) and takes the next sequence number after them.
        await self._background_done()
        if hand_over:  # the stream's next owner continues the session and its recording
            self.handed_over = True
            log.info(
                "stream %s: session %s handed over (%s): the next owner continues it within "
                "the %g s reconnect window",
                self.stream_id,
                self.info.session_id,
                reason,
                self.grant.reconnect_window_seconds,
            )
        else:
            await self._events.session_ended(
                self.info, ended_at=ended_at, reason=reason, bytes_in=self._hub.bytes_in
            )
        await self._background_done()
        self.ended.set()

    def _hands_over(self, reason: EndReason) -> bool:
        """Whether ending for ``reason`` hands the session over (see :meth:`finish`)."""
        if self.grant.reconnect_window_seconds <= 0:
            return False
        if reason == "replaced":
            return True
        if reason != "draining" or not self._drain_hands_over:
            return False
        return self.outputs.recording is None or (
            self._storage is not None and self._storage.shared
        )

    async def _background_done(self) -> None:
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # -- reports ------------------------------------------------------------------------------

    def _restream_changed(self, target: RestreamTarget, status: OutputStatus) -> None:
        """Report a target that went live, or that failed after working (or at its first try)."""
        state: RestreamState
        if status.state is OutputState.LIVE:
            state, error = "connected", None
        elif status.state is OutputState.FAILED or (
            status.state is OutputState.RETRYING and status.retries == 1
        ):
            state, error = "failed", status.last_error
        else:
            return
        self._spawn(
            self._events.restream_changed(
                self.info, target_id=target.target_id, state=state, last_error=error
            )
        )

    def _spawn(self, work: Awaitable[None]) -> None:
        """Run ``work`` in the background, logging (never raising) its failure."""

        async def guarded() -> None:
            try:
                await work
            except Exception:
                log.exception("stream %s: background work failed", self.stream_id)

        task = asyncio.create_task(guarded())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _always() -> bool:
    return True
