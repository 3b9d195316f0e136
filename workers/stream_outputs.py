"""One live session of one stream: its hub and its outputs, from the first publish to the end.

A session outlives a dropped publisher for the stream's reconnect window: the hub stays open,
the outputs keep running, and a publish with the same key inside the window continues the same
session (the HLS output starts a new ffmpeg run marked with ``EXT-X-DISCONTINUITY``; the
recording stays one recording; restream targets keep their connection). A clean unpublish, an
operator action, the maximum duration, or the window running out ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from config.settings import Settings
from ingest.authorizer import PublishGrant, RestreamTarget
from ingest.hub import StreamHub
from ingest.live import EndReason
from workers.events import RestreamState, SessionInfo, StreamEvents
from workers.hls import HLSOutput
from workers.playlist import LivePlaylist
from workers.recording import RecordingOutput, RecordingStore
from workers.restream import RestreamOutput
from workers.storage import RecordingStorage
from workers.supervisor import OutputState, OutputStatus

log = logging.getLogger(__name__)

READY_TIMEOUT = 10.0
"""Seconds to wait for the first keyframe/track information before giving up on the outputs."""
RESTREAM_DRAIN_SECONDS = 5.0
"""After the publish ended, how long a live restream may take to send what it was given."""

Disconnect = Callable[[str, EndReason], Awaitable[object]]
"""Disconnects the publisher of a stream (given by the orchestrator's owner)."""


class StreamOutputs:
    """One live session of one stream: its hub and its outputs."""

    def __init__(
        self,
        settings: Settings,
        *,
        ffmpeg: str,
        grant: PublishGrant,
        info: SessionInfo,
        directory: Path,
        events: StreamEvents,
        disconnect: Disconnect | None = None,
        recordings: RecordingStore | None = None,
        storage: RecordingStorage | None = None,
    ) -> None:
        self.grant = grant
        self.info = info
        self.client_address = info.client_address
        """The current publisher's address (changes on reconnect)."""
        self.session_tag = info.session_id[-8:]
        self.started_at = info.started_at
        self.hub = StreamHub(grant.stream_id, queue_bytes=settings.hub_queue_bytes)
        self.hub.begin_publisher()
        self.recording: RecordingOutput | None = None
        """The session's recording, when the stream was recorded as the session began."""
        if grant.record and recordings is not None and storage is not None:
            self.recording = RecordingOutput(
                grant.stream_id,
                store=recordings,
                storage=storage,
                segment_seconds=settings.hls_segment_seconds,
                started_at=self.started_at,
            )
        playlist = LivePlaylist(
            directory,
            list_size=settings.hls_list_size,
            segment_seconds=settings.hls_segment_seconds,
            on_segment=self.recording.on_segment if self.recording is not None else None,
        )
        self.hls = HLSOutput(
            settings, ffmpeg=ffmpeg, hub=self.hub, playlist=playlist, session_tag=self.session_tag
        )
        self._settings = settings
        self._ffmpeg = ffmpeg
        self._events = events
        self._disconnect = disconnect
        self._targets = {t.target_id: t for t in grant.restream}
        self._restreams: dict[str, RestreamOutput] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._starter: asyncio.Task[None] | None = None
        self._window: asyncio.Task[None] | None = None
        self._deadline: asyncio.Task[None] | None = None
        self._started = False
        self._ending: asyncio.Future[None] | None = None
        self.reconnects = 0
        self.ended = asyncio.Event()

    # -- what the API reads ---------------------------------------------------------------

    @property
    def reconnecting(self) -> bool:
        """The publisher dropped and the session waits for it inside the reconnect window."""
        return self._window is not None and not self._window.done()

    @property
    def ending(self) -> bool:
        """The session is ending or has ended."""
        return self._ending is not None

    @property
    def restreams(self) -> Mapping[str, RestreamOutput]:
        """The running restream outputs by target id (read-only view)."""
        return MappingProxyType(self._restreams)

    def output_statuses(self) -> Iterator[tuple[OutputStatus, int]]:
        """Each running output's status and the frames it dropped because it lagged."""
        yield self.hls.supervisor.status(), self.hls.dropped_frames
        for output in self._restreams.values():
            sub = output.subscription
            yield output.status(), sub.dropped_frames if sub is not None else 0

    # -- life -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the outputs once the hub knows the tracks; report the session; arm the
        maximum-duration timer."""
        self._starter = asyncio.create_task(self._start_when_ready())
        self._spawn(self._events.session_started(self.info))
        self._deadline = asyncio.create_task(self._end_at_max_duration())

    async def _start_when_ready(self) -> None:
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await self.hub.ready.wait()
        except TimeoutError:
            log.warning(
                "stream %s: no decodable media within %.0f s; outputs not started",
                self.grant.stream_id,
                READY_TIMEOUT,
            )
            return
        self._started = True
        if self.recording is not None:
            self.recording.start()
        self.hls.start()
        for target in self._targets.values():
            self._start_restream(target)

    def _start_restream(self, target: RestreamTarget) -> None:
        output = RestreamOutput(
            self._settings,
            ffmpeg=self._ffmpeg,
            hub=self.hub,
            target=target,
            on_change=functools.partial(self._restream_changed, target),
        )
        self._restreams[target.target_id] = output
        output.start()

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

    def set_restream(self, targets: Sequence[RestreamTarget]) -> None:
        """Relay to ``targets`` from now on: start the new ones, stop (in the background) the
        ones no longer listed or whose URL changed; the others go on untouched."""
        if self._ending is not None:
            return
        wanted = {t.target_id: t for t in targets}
        for target_id, output in list(self._restreams.items()):
            if wanted.get(target_id) != output.target:
                del self._restreams[target_id]
                self._spawn(output.stop())
        self._targets = wanted
        if self._started:
            for target_id, target in wanted.items():
                if target_id not in self._restreams:
                    self._start_restream(target)

    def resume(self, grant: PublishGrant, client_address: str) -> None:
        """A publisher with the same key came back inside the window: continue the session."""
        if self._window is not None:
            self._window.cancel()
            self._window = None
        self.reconnects += 1
        self.client_address = client_address
        self.hub.begin_publisher()
        self.hls.roll_over()
        self.set_restream(grant.restream)
        log.info("stream %s: publisher reconnected from %s", grant.stream_id, client_address)
        self._spawn(self._events.session_reconnected(self.info, client_address))

    async def end(self, *, clean: bool, reason: EndReason) -> None:
        """The publisher left. A clean stop ends the session now; a dropped publisher gets the
        stream's reconnect window first (none when it is 0)."""
        window = self.grant.reconnect_window_seconds
        if clean or window <= 0 or self._ending is not None:
            await self.finish(reason)
            return
        log.info(
            "stream %s: publisher gone; waiting %g s for it to reconnect",
            self.grant.stream_id,
            window,
        )
        self._window = asyncio.create_task(self._end_after_window(window, reason))

    async def _end_after_window(self, window: float, reason: EndReason) -> None:
        await asyncio.sleep(window)
        self._window = None
        log.info("stream %s: no reconnect within %g s", self.grant.stream_id, window)
        await self.finish(reason)

    async def _end_at_max_duration(self) -> None:
        await asyncio.sleep(self.grant.max_duration_seconds)
        log.warning(
            "stream %s: session reached its maximum duration of %g s",
            self.grant.stream_id,
            self.grant.max_duration_seconds,
        )
        if self._disconnect is not None:
            await self._disconnect(self.grant.stream_id, "max_duration")
        await self.finish("max_duration")

    async def finish(self, reason: EndReason) -> None:
        """End the session now: flush the outputs, close the playlist with ENDLIST and the
        recording, report the end. Safe to call more than once (later calls wait)."""
        if self._ending is None:
            self._ending = asyncio.ensure_future(self._finish(reason))
        await asyncio.shield(self._ending)

    async def _finish(self, reason: EndReason) -> None:
        current = asyncio.current_task()
        for task in (self._window, self._deadline, self._starter):
            if task is not None and task is not current:
                task.cancel()
        self.hub.close()
        if self._starter is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._starter
        restreams = [
            output.stop(drain_timeout=RESTREAM_DRAIN_SECONDS) for output in self._restreams.values()
        ]
        results = await asyncio.gather(
            self._end_hls_and_recording(), *restreams, return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                log.error("stream %s: an output failed to stop: %r", self.grant.stream_id, result)
        await self._events.session_ended(
            self.info, ended_at=time.time(), reason=reason, bytes_in=self.hub.bytes_in
        )
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        self.ended.set()

    async def _end_hls_and_recording(self) -> None:
        if self.hls.supervisor.state is not OutputState.IDLE:
            await self.hls.stop(timeout=self._settings.hls_segment_seconds * 3 + 5)
        if self.recording is not None:
            await self.recording.close()

    def _spawn(self, work: Awaitable[None]) -> None:
        """Run ``work`` in the background, logging (never raising) its failure."""

        async def guarded() -> None:
            try:
                await work
            except Exception:
                log.exception("stream %s: background work failed", self.grant.stream_id)

        task = asyncio.create_task(guarded())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
