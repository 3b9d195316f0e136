"""Starts and stops the outputs of each live stream: the one place that knows which outputs a
publish gets (implements :class:`ingest.session.PublishSink`).

A publish gets the live HLS output, a recording when the stream is recorded (fed by the HLS
output's segments: still one ffmpeg for both) and one restream output per target. Every output is
supervised on its own, so one failing never disturbs another. The restream targets of a live
stream can change while it is live (:meth:`Orchestrator.update_restream`): only the changed
targets start or stop. Whether a stream is recorded is decided when its session starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from config.settings import Settings
from ingest.authorizer import PublishGrant, RestreamTarget
from ingest.hub import StreamHub
from workers.hls import HLSOutput
from workers.playlist import LivePlaylist
from workers.recording import RecordingOutput, RecordingStore, finalize_unfinished
from workers.restream import RestreamOutput
from workers.storage import RecordingStorage
from workers.supervisor import OutputState, OutputStatus

log = logging.getLogger(__name__)

READY_TIMEOUT = 10.0
"""Seconds to wait for the first keyframe/track information before giving up on the outputs."""
RESTREAM_DRAIN_SECONDS = 5.0
"""After the publish ended, how long a live restream may take to send what it was given."""


class StreamOutputs:
    """One live session of one stream: its hub and its outputs."""

    def __init__(
        self,
        settings: Settings,
        *,
        ffmpeg: str,
        grant: PublishGrant,
        directory: Path,
        recordings: RecordingStore | None = None,
        storage: RecordingStorage | None = None,
    ) -> None:
        self.grant = grant
        self.session_tag = secrets.token_hex(4)
        self.started_at = time.time()
        self.hub = StreamHub(grant.stream_id, queue_bytes=settings.hub_queue_bytes)
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
        self._targets = {t.target_id: t for t in grant.restream}
        self._restreams: dict[str, RestreamOutput] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._starter: asyncio.Task[None] | None = None
        self._started = False
        self._ending: asyncio.Future[None] | None = None
        self.ended = asyncio.Event()

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

    def start(self) -> None:
        """Start the outputs once the hub knows the tracks (first keyframe or metadata)."""
        self._starter = asyncio.create_task(self._start_when_ready())

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
        output = RestreamOutput(self._settings, ffmpeg=self._ffmpeg, hub=self.hub, target=target)
        self._restreams[target.target_id] = output
        output.start()

    def set_restream(self, targets: Sequence[RestreamTarget]) -> None:
        """Relay to ``targets`` from now on: start the new ones, stop (in the background) the
        ones no longer listed or whose URL changed; the others go on untouched."""
        if self._ending is not None:
            return
        wanted = {t.target_id: t for t in targets}
        for target_id, output in list(self._restreams.items()):
            if wanted.get(target_id) != output.target:
                del self._restreams[target_id]
                self._retire(output)
        self._targets = wanted
        if self._started:
            for target_id, target in wanted.items():
                if target_id not in self._restreams:
                    self._start_restream(target)

    def _retire(self, output: RestreamOutput) -> None:
        task = asyncio.create_task(output.stop(), name=f"stop:{output.name}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def end(self, *, clean: bool, reason: str) -> None:
        """The publish ended: flush the outputs, close the playlist with ENDLIST and close the
        recording. Safe to call more than once (later calls wait for the first)."""
        del clean, reason  # a reconnect window will use these
        if self._ending is None:
            self._ending = asyncio.ensure_future(self._end())
        await asyncio.shield(self._ending)

    async def _end(self) -> None:
        self.hub.close()
        if self._starter is not None:
            self._starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starter
        restreams = [
            output.stop(drain_timeout=RESTREAM_DRAIN_SECONDS) for output in self._restreams.values()
        ]
        results = await asyncio.gather(
            self._end_hls_and_recording(), *restreams, *self._retiring, return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                log.error("stream %s: an output failed to stop: %r", self.grant.stream_id, result)
        self.ended.set()

    async def _end_hls_and_recording(self) -> None:
        if self.hls.supervisor.state is not OutputState.IDLE:
            await self.hls.stop(timeout=self._settings.hls_segment_seconds * 3 + 5)
        if self.recording is not None:
            await self.recording.close()


class Orchestrator:
    """Owns every live stream's outputs on this node."""

    def __init__(
        self,
        settings: Settings,
        *,
        ffmpeg: str,
        recordings: RecordingStore | None = None,
        storage: RecordingStorage | None = None,
    ) -> None:
        """Without ``recordings`` and ``storage`` nothing is recorded."""
        self._settings = settings
        self._ffmpeg = ffmpeg
        self._recordings = recordings
        self._storage = storage
        self._live: dict[str, StreamOutputs] = {}
        self._cleanups: dict[str, asyncio.Task[None]] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    def get(self, stream_id: str) -> StreamOutputs | None:
        """The live outputs of ``stream_id``, if it is live."""
        return self._live.get(stream_id)

    def live_outputs(self) -> tuple[StreamOutputs, ...]:
        """The outputs of every stream live on this node."""
        return tuple(self._live.values())

    async def recover(self) -> None:
        """Close the recordings an unclean shutdown left open (call before accepting publishes)."""
        if self._recordings is None or self._storage is None:
            return
        try:
            await finalize_unfinished(self._recordings, self._storage)
        except Exception:
            log.exception("closing the recordings left open by the last run failed")

    def update_restream(self, stream_id: str, targets: Sequence[RestreamTarget]) -> bool:
        """Apply a new target list to ``stream_id`` if it is live here; returns whether it was."""
        outputs = self._live.get(stream_id)
        if outputs is None:
            return False
        outputs.set_restream(targets)
        return True

    async def open(self, grant: PublishGrant, client_address: str) -> StreamOutputs:
        """Prepare a clean live directory and start the outputs of a new publish."""
        stream_id = grant.stream_id
        cleanup = self._cleanups.pop(stream_id, None)
        if cleanup is not None:
            cleanup.cancel()
        directory = self._settings.live_dir / stream_id
        await asyncio.to_thread(_reset_dir, directory)
        outputs = StreamOutputs(
            self._settings,
            ffmpeg=self._ffmpeg,
            grant=grant,
            directory=directory,
            recordings=self._recordings,
            storage=self._storage,
        )
        self._live[stream_id] = outputs
        outputs.start()
        watcher = asyncio.create_task(self._forget_when_ended(outputs))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return outputs

    async def _forget_when_ended(self, outputs: StreamOutputs) -> None:
        await outputs.ended.wait()
        stream_id = outputs.grant.stream_id
        if self._live.get(stream_id) is outputs:
            del self._live[stream_id]
            self._cleanups[stream_id] = asyncio.create_task(self._remove_later(stream_id))

    async def _remove_later(self, stream_id: str) -> None:
        """Keep the ended playlist long enough for players to reach ENDLIST, then remove it."""
        linger = self._settings.hls_segment_seconds * self._settings.hls_list_size * 2
        await asyncio.sleep(linger)
        await asyncio.to_thread(shutil.rmtree, self._settings.live_dir / stream_id, True)
        self._cleanups.pop(stream_id, None)

    async def close(self) -> None:
        """End every live stream (shutdown)."""
        await asyncio.gather(
            *(o.end(clean=True, reason="server shutting down") for o in list(self._live.values())),
            return_exceptions=True,
        )
        for task in self._cleanups.values():
            task.cancel()


def _reset_dir(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
