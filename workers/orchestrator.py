"""Starts and stops the outputs of each live stream: the one place that knows which outputs a
publish gets (implements :class:`ingest.session.PublishSink`). A session's own life (reconnect
window, maximum duration) is in :mod:`workers.stream_outputs`.

A publish gets the live HLS output, a recording when the stream is recorded (fed by the HLS
output's segments: still one ffmpeg for both) and one restream output per target. Every output is
supervised on its own, so one failing never disturbs another. The restream targets of a live
stream can change while it is live (:meth:`Orchestrator.update_restream`): only the changed
targets start or stop. Whether a stream is recorded is decided when its session starts.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from config.settings import Settings
from ingest.authorizer import PublishGrant, RestreamTarget
from ingest.live import EndReason
from workers.events import NoStreamEvents, SessionInfo, StreamEvents
from workers.recording import RecordingStore, finalize_unfinished
from workers.storage import RecordingStorage
from workers.stream_outputs import Disconnect, StreamOutputs

log = logging.getLogger(__name__)


class Orchestrator:
    """Owns every live stream's outputs on this node."""

    def __init__(
        self,
        settings: Settings,
        *,
        ffmpeg: str,
        recordings: RecordingStore | None = None,
        storage: RecordingStorage | None = None,
        events: StreamEvents | None = None,
        disconnect: Disconnect | None = None,
    ) -> None:
        """Without ``recordings`` and ``storage`` nothing is recorded; without ``events`` the
        session life goes unreported; ``disconnect`` ends a publisher (maximum duration)."""
        self._settings = settings
        self._ffmpeg = ffmpeg
        self._events: StreamEvents = events if events is not None else NoStreamEvents()
        self._disconnect = disconnect
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

    async def complete(self, stream_id: str, reason: EndReason) -> bool:
        """End the session of ``stream_id`` now, also inside a reconnect window; returns
        whether there was one."""
        outputs = self._live.get(stream_id)
        if outputs is None:
            return False
        await outputs.finish(reason)
        return True

    async def open(self, grant: PublishGrant, client_address: str) -> StreamOutputs:
        """Continue the session waiting in its reconnect window, or prepare a clean live
        directory and start the outputs of a new session."""
        stream_id = grant.stream_id
        current = self._live.get(stream_id)
        if current is not None and current.reconnecting:
            current.resume(grant, client_address)
            return current
        if current is not None:  # ending (or a stale publisher not yet gone): let it finish
            await current.finish("publisher_left")
        cleanup = self._cleanups.pop(stream_id, None)
        if cleanup is not None:
            cleanup.cancel()
        directory = self._settings.live_dir / stream_id
        await asyncio.to_thread(_reset_dir, directory)
        info = SessionInfo(stream_id, new_session_id(), time.time(), client_address)
        outputs = StreamOutputs(
            self._settings,
            ffmpeg=self._ffmpeg,
            grant=grant,
            info=info,
            directory=directory,
            events=self._events,
            disconnect=self._disconnect,
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
            *(o.finish("shutdown") for o in list(self._live.values())), return_exceptions=True
        )
        for task in self._cleanups.values():
            task.cancel()


def new_session_id() -> str:
    """A 24-hex id shaped like the API's object ids (time first, so ids sort by start)."""
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{secrets.token_hex(8)}"


def _reset_dir(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
