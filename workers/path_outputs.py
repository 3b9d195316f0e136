"""The outputs of one live path: the live HLS output, the recording it feeds, and one restream
output per target, all reading the path's hub.

Which outputs a publish gets is decided here: HLS always (MPEG-TS on disk, or low-latency HLS
in memory for a ``latency_mode`` ``low`` grant), a recording when the stream was
recorded as its session began (fed by the HLS output's segments, MPEG-TS or fMP4: still one
ffmpeg for both),
and one restream per target. Every output is supervised on its own, so one failing never
disturbs another. The restream targets can change while the stream is live
(:meth:`PathOutputs.set_restream`): only the changed targets start or stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from config.settings import Settings
from ingest.authorizer import PublishGrant, RestreamTarget
from ingest.hub import StreamHub
from workers.hls import HLSOutput
from workers.llhls_output import LowLatencyOutput
from workers.playlist import LivePlaylist
from workers.recording import RecordingOutput, RecordingStore
from workers.recording_fmp4 import FragmentedRecording
from workers.restream import RestreamOutput
from workers.storage import RecordingStorage
from workers.supervisor import OutputState, OutputStatus

log = logging.getLogger(__name__)

READY_TIMEOUT = 10.0
"""Seconds to wait for the first keyframe/track information before giving up on the outputs."""
RESTREAM_DRAIN_SECONDS = 5.0
"""After the publish ended, how long a live restream may take to send what it was given."""

RestreamChanged = Callable[[RestreamTarget, OutputStatus], None]
"""Told each status change of a restream output."""


class PathOutputs:
    """The outputs of one live path (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        ffmpeg: str,
        hub: StreamHub,
        grant: PublishGrant,
        session_tag: str,
        started_at: float,
        directory: Path,
        on_restream_change: RestreamChanged,
        recordings: RecordingStore | None = None,
        storage: RecordingStorage | None = None,
        session_id: str | None = None,
        generation: int | None = None,
        resume_recording: str | None = None,
    ) -> None:
        """``resume_recording``: the session's recording an earlier owner began, continued."""
        self._settings = settings
        self._ffmpeg = ffmpeg
        self._hub = hub
        self._stream_id = grant.stream_id
        self._on_restream_change = on_restream_change
        self.recording: RecordingOutput | None = None
        """The session's recording, when the stream was recorded as the session began."""
        if grant.record and recordings is not None and storage is not None:
            self.recording = RecordingOutput(
                grant.stream_id,
                store=recordings,
                storage=storage,
                segment_seconds=settings.hls_segment_seconds,
                started_at=started_at,
                session_id=session_id,
                generation=generation,
                resume_id=resume_recording,
                spool=directory,
            )
        self.hls: HLSOutput | LowLatencyOutput
        """The live playback output: MPEG-TS segments on disk, or low-latency HLS in memory."""
        if grant.latency_mode == "low":
            recorder = None
            if self.recording is not None:
                recorder = FragmentedRecording(self.recording, session_tag=session_tag)
            self.hls = LowLatencyOutput(
                settings,
                ffmpeg=ffmpeg,
                hub=hub,
                on_segments=recorder.on_segments if recorder is not None else None,
                name_tag=session_tag,
                renditions=grant.renditions,
            )
            if recorder is not None:
                recorder.stream = self.hls.stream
        else:
            playlist = LivePlaylist(
                directory,
                list_size=settings.hls_list_size,
                segment_seconds=settings.hls_segment_seconds,
                on_segment=self.recording.on_segment if self.recording is not None else None,
            )
            self.hls = HLSOutput(
                settings,
                ffmpeg=ffmpeg,
                hub=hub,
                playlist=playlist,
                session_tag=session_tag,
                renditions=grant.renditions,
            )
        self._targets = {t.target_id: t for t in grant.restream}
        self._restreams: dict[str, RestreamOutput] = {}
        self._starter: asyncio.Task[None] | None = None
        self._started = False
        self._stopping = False
        self._stops: set[asyncio.Task[None]] = set()

    @property
    def restreams(self) -> Mapping[str, RestreamOutput]:
        """The running restream outputs by target id (read-only view)."""
        return MappingProxyType(self._restreams)

    @property
    def renditions(self) -> tuple[str, ...]:
        """The renditions the session produces, ``source`` first (empty until its playback
        output started)."""
        if isinstance(self.hls, HLSOutput):
            return self.hls.renditions.produced
        return self.hls.renditions

    @property
    def transcode_speed(self) -> float | None:
        """ffmpeg's last reported speed for a ladder (``None`` without a rung)."""
        watch = self.hls.keep_up
        return watch.speed if watch is not None else None

    @property
    def dropped_renditions(self) -> tuple[str, ...]:
        """Rungs dropped this session because the transcoding could not keep up (or their
        output was unreadable)."""
        if isinstance(self.hls, HLSOutput):
            return tuple(self.hls.renditions.dropped)
        return tuple(r.rung.name for r in self.hls.dropped)

    def statuses(self) -> Iterator[tuple[OutputStatus, int]]:
        """Each running output's status and the frames it dropped because it lagged."""
        yield self.hls.supervisor.status(), self.hls.dropped_frames
        for output in self._restreams.values():
            sub = output.subscription
            yield output.status(), sub.dropped_frames if sub is not None else 0

    def start(self) -> None:
        """Start the outputs once the hub knows the tracks."""
        self._starter = asyncio.create_task(self._start_when_ready())

    async def _start_when_ready(self) -> None:
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await self._hub.ready.wait()
        except TimeoutError:
            log.warning(
                "stream %s: no decodable media within %.0f s; outputs not started",
                self._stream_id,
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
            hub=self._hub,
            target=target,
            on_change=functools.partial(self._on_restream_change, target),
        )
        self._restreams[target.target_id] = output
        output.start()

    def set_restream(self, targets: Sequence[RestreamTarget]) -> None:
        """Relay to ``targets`` from now on: start the new ones, stop (in the background) the
        ones no longer listed or whose URL changed; the others go on untouched."""
        if self._stopping:
            return
        wanted = {t.target_id: t for t in targets}
        for target_id, output in list(self._restreams.items()):
            if wanted.get(target_id) != output.target:
                del self._restreams[target_id]
                self._background(output.stop())
        self._targets = wanted
        if self._started:
            for target_id, target in wanted.items():
                if target_id not in self._restreams:
                    self._start_restream(target)

    def roll_over(self) -> None:
        """A new publisher continues the session: the HLS output starts a new ffmpeg run."""
        self.hls.roll_over()

    async def stop(self, *, hand_over: bool = False) -> None:
        """Stop every output (the hub is closed): flush HLS, close the playlist with ENDLIST
        and the recording (``hand_over``: store it but leave it open for the node the session
        moves to), let each restream send what it was given."""
        self._stopping = True
        if self._starter is not None:
            self._starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starter
        restreams = [
            output.stop(drain_timeout=RESTREAM_DRAIN_SECONDS) for output in self._restreams.values()
        ]
        results = await asyncio.gather(
            self._end_hls_and_recording(hand_over), *restreams, *self._stops, return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                log.error("stream %s: an output failed to stop: %r", self._stream_id, result)

    async def _end_hls_and_recording(self, hand_over: bool) -> None:
        if self.hls.supervisor.state is not OutputState.IDLE:
            await self.hls.stop(timeout=self._settings.hls_segment_seconds * 3 + 5)
        if self.recording is not None:
            await (self.recording.hand_over() if hand_over else self.recording.close())

    def _background(self, stop: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await stop
            except Exception:
                log.exception("stream %s: a restream output failed to stop", self._stream_id)

        task = asyncio.create_task(run())
        self._stops.add(task)
        task.add_done_callback(self._stops.discard)
