"""Starts and stops the outputs of each live stream: the one place that knows which outputs a
publish gets (implements :class:`ingest.session.PublishSink`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
from pathlib import Path

from config.settings import Settings
from ingest.authorizer import PublishGrant
from ingest.hub import StreamHub
from workers.hls import HLSOutput
from workers.playlist import LivePlaylist

log = logging.getLogger(__name__)

READY_TIMEOUT = 10.0
"""Seconds to wait for the first keyframe/track information before giving up on the outputs."""


class StreamOutputs:
    """One live session of one stream: its hub and its outputs."""

    def __init__(
        self, settings: Settings, *, ffmpeg: str, grant: PublishGrant, directory: Path
    ) -> None:
        self.grant = grant
        self.session_tag = secrets.token_hex(4)
        self.hub = StreamHub(grant.stream_id, queue_bytes=settings.hub_queue_bytes)
        playlist = LivePlaylist(
            directory,
            list_size=settings.hls_list_size,
            segment_seconds=settings.hls_segment_seconds,
        )
        self.hls = HLSOutput(
            settings, ffmpeg=ffmpeg, hub=self.hub, playlist=playlist, session_tag=self.session_tag
        )
        self._settings = settings
        self._starter: asyncio.Task[None] | None = None
        self.ended = asyncio.Event()

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
        self.hls.start()

    async def end(self, *, clean: bool, reason: str) -> None:
        """The publish ended: flush the outputs and close the playlist with ENDLIST."""
        del clean, reason  # a reconnect window will use these
        self.hub.close()
        if self._starter is not None:
            self._starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starter
        if self.hls.supervisor.state.value != "idle":
            await self.hls.stop(timeout=self._settings.hls_segment_seconds * 3 + 5)
        self.ended.set()


class Orchestrator:
    """Owns every live stream's outputs on this node."""

    def __init__(self, settings: Settings, *, ffmpeg: str) -> None:
        self._settings = settings
        self._ffmpeg = ffmpeg
        self._live: dict[str, StreamOutputs] = {}
        self._cleanups: dict[str, asyncio.Task[None]] = {}
        self._watchers: set[asyncio.Task[None]] = set()

    def get(self, stream_id: str) -> StreamOutputs | None:
        """The live outputs of ``stream_id``, if it is live."""
        return self._live.get(stream_id)

    async def open(self, grant: PublishGrant, client_address: str) -> StreamOutputs:
        """Prepare a clean live directory and start the outputs of a new publish."""
        stream_id = grant.stream_id
        cleanup = self._cleanups.pop(stream_id, None)
        if cleanup is not None:
            cleanup.cancel()
        directory = self._settings.live_dir / stream_id
        await asyncio.to_thread(_reset_dir, directory)
        outputs = StreamOutputs(
            self._settings, ffmpeg=self._ffmpeg, grant=grant, directory=directory
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
