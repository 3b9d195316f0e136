"""The fan-out hub: one publisher, many bounded subscriptions.

The publisher calls :meth:`StreamHub.publish_media` and never waits: each subscription has its
own byte-bounded queue. A subscription that falls behind drops frames until the next video
keyframe (or, for audio-only streams, the next frame that fits), counts the drops and warns at a
limited rate. The hub caches the metadata and the sequence headers so a subscription that starts
(or restarts) late begins with a decodable stream.

Every queued byte counts toward the bound, sequence headers included: what counts as a header
is a byte the publisher chooses. A lagging subscription keeps only the latest header of each
track, and a header (or ``onMetaData``) over :data:`MAX_SEQUENCE_HEADER_BYTES` is refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from ingest.flv import (
    TAG_SCRIPT,
    TAG_VIDEO,
    file_header,
    frame_tag,
    inspect_audio,
    inspect_video,
)
from ingest.stats import BitrateMeter, StreamStats
from ingest.subscription import ReadEnd, Subscription

__all__ = [
    "MAX_SEQUENCE_HEADER_BYTES",
    "MediaRefused",
    "ReadEnd",
    "StreamHub",
    "Subscription",
    "Tracks",
]

AUDIO_ONLY_AFTER_MS = 1000
REBASE_GAP_MS = 40
"""Gap put between the last timestamp of a publisher and the first of its replacement."""
MAX_SEQUENCE_HEADER_BYTES = 64 * 1024
"""Largest sequence header (decoder configuration) or ``onMetaData`` body a publisher may send.
Real ones are well under a kilobyte; the hub caches them for late outputs."""


class MediaRefused(Exception):
    """The publisher sent something the hub does not take (a protocol error: the publish must
    end). The message says what and how big, never the bytes."""


@dataclass(frozen=True)
class Tracks:
    """Which elementary streams the publish carries."""

    has_audio: bool
    has_video: bool


class StreamHub:
    """Fans one stream's media out to subscriptions. One hub per live stream (kept across a
    publisher reconnect so outputs keep running)."""

    def __init__(
        self,
        stream_id: str,
        *,
        queue_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream_id = stream_id
        self._queue_bytes = queue_bytes
        self._clock = clock
        self._subscriptions: list[Subscription] = []
        self._metadata: bytes | None = None
        self._video_header: bytes | None = None
        self._audio_header: bytes | None = None
        self._tracks: Tracks | None = None
        self._video_expected = False
        """Whether video is expected (a random-access point is then a video keyframe); set when
        the tracks or the video header become known."""
        self._first_audio_ts: int | None = None
        self._gop: list[bytes] = []
        self._gop_bytes = 0
        self._publishers = 0
        self._rebase_pending = False
        self._offset = 0
        self._last_ts = 0
        self.stats = StreamStats()
        """Codecs, picture size, frame rate and encoder, as the publisher described them."""
        self._closed = False
        self.bytes_in = 0
        """Media payload bytes received from the publisher."""
        self.last_media_at = clock()
        """Clock time of the last audio/video message (or of the hub's creation)."""
        self.bitrate = BitrateMeter()
        """Ingest bitrate over the last few seconds."""
        self._keyframe_listeners: list[Callable[[], None]] = []
        self.ready = asyncio.Event()
        """Set once the tracks are known and outputs can start with a decodable stream."""
        self.video_configured = asyncio.Event()
        """Set once a video sequence header arrived: :attr:`stats` then has the picture size
        it carries (when it was readable). ``onMetaData`` may make the hub :attr:`ready`
        before it, without a size."""

    @property
    def clock(self) -> Callable[[], float]:
        """The hub's clock (monotonic seconds): ``last_media_at`` is on it, and the outputs of
        the stream time their stalls and polls with it."""
        return self._clock

    @property
    def tracks(self) -> Tracks | None:
        """The tracks, once known."""
        return self._tracks

    def begin_publisher(self) -> None:
        """A publisher (re)connected. After a reconnect its timestamps start over, so they are
        shifted to continue where the previous publisher stopped: outputs that keep running
        (restream targets) see one monotonic stream. The cached GOP belongs to the previous
        publisher and is dropped."""
        self._publishers += 1
        if self._publishers > 1:
            self._rebase_pending = True
            self._gop, self._gop_bytes = [], 0
            self.stats.reset_timing()

    def _rebase(self, timestamp: int) -> int:
        if self._rebase_pending:
            self._rebase_pending = False
            self._offset = (self._last_ts + REBASE_GAP_MS - timestamp) & 0xFFFFFFFF
        out = (timestamp + self._offset) & 0xFFFFFFFF
        self._last_ts = out
        return out

    def publish_metadata(self, payload: bytes, metadata: dict[str, object]) -> None:
        """Record ``onMetaData`` (the FLV script tag body) and learn the tracks from it. Raises
        :class:`MediaRefused` when it is over :data:`MAX_SEQUENCE_HEADER_BYTES`."""
        if len(payload) > MAX_SEQUENCE_HEADER_BYTES:
            raise MediaRefused(
                f"onMetaData of {len(payload)} bytes is over the "
                f"{MAX_SEQUENCE_HEADER_BYTES}-byte limit"
            )
        self.stats.on_metadata(metadata)
        self._metadata = frame_tag(TAG_SCRIPT, 0, payload)
        if self._tracks is None and ("videocodecid" in metadata or "audiocodecid" in metadata):
            self._set_tracks(
                Tracks(
                    has_audio=_declared(metadata, "audiocodecid"),
                    has_video=_declared(metadata, "videocodecid"),
                )
            )

    def publish_media(self, kind: int, timestamp: int, body: bytes | memoryview) -> None:
        """Frame one audio/video message and hand it to every subscription without waiting.
        Raises :class:`MediaRefused` for a sequence header over
        :data:`MAX_SEQUENCE_HEADER_BYTES` (nothing of it is kept)."""
        size = len(body)
        info = inspect_video(body) if kind == TAG_VIDEO else inspect_audio(body)
        config = info.sequence_header
        if config and size > MAX_SEQUENCE_HEADER_BYTES:
            track = "video" if kind == TAG_VIDEO else "audio"
            raise MediaRefused(
                f"{track} sequence header of {size} bytes is over the "
                f"{MAX_SEQUENCE_HEADER_BYTES}-byte limit"
            )
        self.bytes_in += size
        self.last_media_at = now = self._clock()
        self.bitrate.add(now, size)
        timestamp = self._rebase(timestamp)
        data = frame_tag(kind, timestamp, body)
        if kind == TAG_VIDEO:
            if config:
                self._video_header = data
                if self._tracks is None:
                    self._video_expected = True
            random_access = keyframe = info.keyframe
        else:
            if config:
                self._audio_header = data
            random_access = not self._video_expected
            keyframe = False
        if self._tracks is None:
            self._guess_tracks(kind, timestamp, keyframe)
        self.stats.on_media(kind, timestamp, info, body)
        if config and kind == TAG_VIDEO:
            self.video_configured.set()
        self._cache_gop(kind, data, keyframe)
        video_keyframes = self._video_expected
        for sub in self._subscriptions:
            sub._offer(data, random_access, config, video_keyframes)
        if keyframe:
            for listener in self._keyframe_listeners:
                listener()

    def add_keyframe_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` each time a video keyframe has been queued to the
        subscriptions (the HLS output polls ffmpeg's playlist faster then)."""
        self._keyframe_listeners.append(listener)

    def remove_keyframe_listener(self, listener: Callable[[], None]) -> None:
        if listener in self._keyframe_listeners:
            self._keyframe_listeners.remove(listener)

    def _cache_gop(self, kind: int, data: bytes, keyframe: bool) -> None:
        """Keep the frames since the last video keyframe, so an output that starts now begins
        at that keyframe instead of waiting up to a GOP for the next one."""
        if kind == TAG_VIDEO and keyframe:
            self._gop = [data]
            self._gop_bytes = len(data)
        elif self._gop:
            self._gop_bytes += len(data)
            if self._gop_bytes > self._queue_bytes // 2:
                self._gop, self._gop_bytes = [], 0  # GOP too long to replay: wait instead
            else:
                self._gop.append(data)

    def _guess_tracks(self, kind: int, timestamp: int, keyframe: bool) -> None:
        """Without metadata: video is known at the first keyframe; a stream is audio-only once
        its audio has advanced :data:`AUDIO_ONLY_AFTER_MS` without any video."""
        if kind == TAG_VIDEO:
            if keyframe:
                self._set_tracks(Tracks(has_audio=self._first_audio_ts is not None, has_video=True))
            return
        if self._first_audio_ts is None:
            self._first_audio_ts = timestamp
        elif self._video_header is None and timestamp - self._first_audio_ts >= AUDIO_ONLY_AFTER_MS:
            self._set_tracks(Tracks(has_audio=True, has_video=False))

    def _set_tracks(self, tracks: Tracks) -> None:
        if tracks.has_audio or tracks.has_video:
            self._tracks = tracks
            self._video_expected = tracks.has_video
            self.ready.set()

    def subscribe(self, name: str) -> Subscription:
        """A new subscription that starts with the FLV header and cached headers. Call after
        :attr:`ready` is set."""
        sub = Subscription(name, max_bytes=self._queue_bytes, clock=self._clock)
        self._subscriptions.append(sub)
        self.restart(sub)
        if self._closed:
            sub._close()
        return sub

    def restart(self, sub: Subscription) -> None:
        """Begin ``sub`` again from a clean FLV header (used when its consumer restarts)."""
        tracks = self._tracks or Tracks(has_audio=True, has_video=True)
        preamble = [file_header(has_audio=tracks.has_audio, has_video=tracks.has_video)]
        preamble += [h for h in (self._metadata, self._video_header, self._audio_header) if h]
        preamble += self._gop
        sub._start(preamble, wait_for_keyframe=tracks.has_video and not self._gop)

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop feeding ``sub``."""
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)
        sub._close()

    def close(self) -> None:
        """The publish ended: readers drain what is queued, then read ``None``."""
        self._closed = True
        for sub in self._subscriptions:
            sub._close()

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        """Current subscriptions (read-only view)."""
        return tuple(self._subscriptions)


def _declared(metadata: dict[str, object], key: str) -> bool:
    value = metadata.get(key)
    return value is not None and value != 0 and value != ""
