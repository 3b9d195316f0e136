"""One consumer's view of a live stream: a byte-bounded queue of complete FLV tags.

:class:`~ingest.hub.StreamHub` creates and feeds subscriptions; the consumer only reads. A
subscription that falls behind drops frames until the next point it may resume at, counts the
drops and warns at a limited rate. Sequence headers count toward the bound like any tag: only
the latest of each track is held for a lagging reader, so a publisher that sends headers without
end cannot grow the queue.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Callable

from ingest.ratelimit import WarningRateLimiter

log = logging.getLogger(__name__)

_BREAK = b""
"""Queue marker of a requested break (no FLV tag is empty)."""

DROP_WARNING_INTERVAL = 10.0
"""Seconds between two lag warnings of one subscription."""


class ReadEnd(enum.Enum):
    """What :meth:`Subscription.read` returns when it has no media to deliver."""

    BREAK = "break"
    """A requested break (:meth:`Subscription.request_break`): the consumer ends its current
    run here; reading on delivers what came after it."""
    ENDED = "ended"
    """The publish ended and everything queued was read; every later read says so again."""


class Subscription:
    """One consumer's view of a stream: a bounded queue of complete FLV tags."""

    def __init__(self, name: str, *, max_bytes: int, clock: Callable[[], float]) -> None:
        self.name = name
        self.max_bytes = max_bytes
        self.dropped_frames = 0
        """Frames dropped because this subscription lagged."""
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._waiting_for_keyframe = False
        self._closed = False
        self._wakeup = asyncio.Event()
        self._warnings = WarningRateLimiter(DROP_WARNING_INTERVAL, clock=clock)
        self._taken = 0
        """Queue entries :meth:`read` took since the last start: ``_taken + i`` is the position
        of the entry at index ``i``."""
        self._open_headers: dict[int, int] = {}
        """Per track (FLV tag type), the position of a queued sequence header that no frame of
        its track follows yet: a newer header of the track replaces it."""
        self._deferred: dict[int, bytes] = {}
        """Per track, the latest sequence header that found this subscription lagging; queued
        just before the frame it resumes at (the same bytes the hub caches, not a copy)."""

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting to be read."""
        return self._queued_bytes

    def _start(self, preamble: list[bytes], *, wait_for_keyframe: bool) -> None:
        self._queue.clear()
        self._queue.extend(preamble)
        self._queued_bytes = sum(map(len, preamble))
        self._waiting_for_keyframe = wait_for_keyframe
        self._taken = 0
        self._open_headers.clear()
        self._deferred.clear()
        self._wakeup.set()

    def _offer(self, data: bytes, random_access: bool, config: bool, video_keyframes: bool) -> None:
        """Queue one FLV tag. ``random_access``: a point a lagging subscription may resume at
        (video keyframe; any audio frame of an audio-only stream). ``config``: a sequence
        header, never dropped but bounded like the rest (see :meth:`_offer_header`). Plain
        arguments, not an object: this runs for every message and every subscription."""
        if self._closed:
            return
        if config:
            self._offer_header(data)
            return
        if self._waiting_for_keyframe:
            if not random_access:
                self.dropped_frames += 1
                return
            self._waiting_for_keyframe = False
        size = len(data)
        if self._deferred:
            size += sum(map(len, self._deferred.values()))
        if self._queued_bytes + size > self.max_bytes:
            self.dropped_frames += 1
            self._waiting_for_keyframe = video_keyframes
            self._warn_lagging()
            return
        if self._deferred:
            self._queue_deferred()
        self._queue.append(data)
        self._queued_bytes += len(data)
        if self._open_headers:
            self._open_headers.pop(data[0], None)
        self._wakeup.set()

    def _offer_header(self, data: bytes) -> None:
        """Queue a sequence header within the byte bound. It replaces an unread header of its
        track that no frame follows yet (nothing was decoded with that one); when it does not
        fit, or the subscription is dropping, it waits as the latest of its track for the
        frame the subscription resumes at. Either way at most one per track is held beyond
        what was already queued."""
        kind, size = data[0], len(data)
        position = self._open_headers.get(kind, -1)
        if position >= self._taken and not self._deferred:  # a deferred one is newer
            index = position - self._taken
            growth = size - len(self._queue[index])
            if self._queued_bytes + growth <= self.max_bytes:
                self._queue[index] = data
                self._queued_bytes += growth
                return
        if (
            self._waiting_for_keyframe
            or self._deferred
            or self._queued_bytes + size > self.max_bytes
        ):
            self._deferred[kind] = data
            return
        self._open_headers[kind] = self._taken + len(self._queue)
        self._queue.append(data)
        self._queued_bytes += size
        self._wakeup.set()

    def _queue_deferred(self) -> None:
        for kind, header in self._deferred.items():
            self._open_headers[kind] = self._taken + len(self._queue)
            self._queue.append(header)
            self._queued_bytes += len(header)
        self._deferred.clear()

    def _warn_lagging(self) -> None:
        if self._warnings.allow("lagging") is not None:
            log.warning(
                "output %s is lagging: dropping until next keyframe (%d frames dropped)",
                self.name,
                self.dropped_frames,
            )

    def _close(self) -> None:
        self._closed = True
        self._wakeup.set()

    def request_break(self) -> None:
        """Mark the current end of the queue: :meth:`read` returns :attr:`ReadEnd.BREAK` there,
        once, so the consumer can end its run cleanly (a publisher reconnect) before reading
        on."""
        self._open_headers.clear()  # a header of the next run never replaces one of this run
        self._queue.append(_BREAK)
        self._wakeup.set()

    async def read(self) -> list[bytes] | ReadEnd:
        """Everything queued so far, oldest first, never an empty list (waiting if nothing is
        queued); :attr:`ReadEnd.BREAK` at a requested break; :attr:`ReadEnd.ENDED` once the
        publish ended and the queue is drained. The ingest reads in batches
        (``LIVERELAY_RTMP_READ_INTERVAL``), so a read here usually takes several messages."""
        while not self._queue:
            if self._closed:
                return ReadEnd.ENDED
            self._wakeup.clear()
            await self._wakeup.wait()
        if self._queue[0] is _BREAK:
            self._queue.popleft()
            self._taken += 1
            return ReadEnd.BREAK
        batch: list[bytes] = []
        while self._queue and self._queue[0] is not _BREAK:
            batch.append(self._queue.popleft())
        self._taken += len(batch)
        self._queued_bytes -= sum(map(len, batch))
        return batch
