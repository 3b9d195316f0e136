"""What a live publish looks like, for the API's ``currentSession``: codecs, picture size, frame
rate, keyframe interval, audio format, encoder name and bitrate."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from ingest.avc import AVCConfigError, parse_avc_config
from ingest.flv import TAG_VIDEO, MediaInfo

# ISO/IEC 14496-3 1.6.3.4: samplingFrequencyIndex
_AAC_SAMPLE_RATES = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)


class BitrateMeter:
    """Bits per second over a sliding window, kept as per-second buckets."""

    def __init__(self, window_seconds: int = 5) -> None:
        self._window = window_seconds
        self._buckets: deque[list[float]] = deque()

    def add(self, now: float, size: int) -> None:
        """Count ``size`` bytes received at clock time ``now``."""
        second = float(int(now))
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += size
        else:
            self._buckets.append([second, float(size)])
            while self._buckets and self._buckets[0][0] <= second - self._window:
                self._buckets.popleft()

    def kbps(self, now: float) -> float:
        """Average kbit/s over the window ending at ``now`` (0 when nothing arrived)."""
        start = now - self._window
        total = sum(size for second, size in self._buckets if second > start)
        return round(total * 8 / 1000 / self._window, 1)


@dataclass
class VideoTrack:
    """The video of a publish, as far as it is known."""

    codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    keyframe_interval: float | None = None
    """Seconds between the last two keyframes."""
    codec_string: str | None = None
    """RFC 6381 codec string, from the H.264 sequence header (``avc1.4D401F``)."""


@dataclass
class AudioTrack:
    """The audio of a publish, as far as it is known."""

    codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    object_type: int | None = None
    """The AAC audio object type of the AudioSpecificConfig (2: AAC-LC)."""


class StreamStats:
    """Collects what the publisher's metadata and media say about the stream."""

    def __init__(self) -> None:
        self.encoder: str | None = None
        self.video: VideoTrack | None = None
        self.audio: AudioTrack | None = None
        self._last_keyframe_ts: int | None = None

    def on_metadata(self, metadata: dict[str, Any]) -> None:
        """Take encoder, picture size, frame rate and audio format from ``onMetaData``."""
        encoder = metadata.get("encoder")
        self.encoder = str(encoder) if isinstance(encoder, str) else self.encoder
        if _number(metadata.get("width")) or _number(metadata.get("videocodecid")):
            video = self.video or VideoTrack()
            video.width = _int(metadata.get("width")) or video.width
            video.height = _int(metadata.get("height")) or video.height
            fps = _number(metadata.get("framerate")) or _number(metadata.get("videoframerate"))
            video.fps = round(fps, 3) if fps else video.fps
            self.video = video
        if _number(metadata.get("audiocodecid")) or _number(metadata.get("audiosamplerate")):
            audio = self.audio or AudioTrack()
            audio.sample_rate = _int(metadata.get("audiosamplerate")) or audio.sample_rate
            channels = metadata.get("audiochannels")
            stereo = metadata.get("stereo")
            audio.channels = (
                _int(channels)
                or (2 if stereo is True else None)
                or (1 if stereo is False else None)
                or audio.channels
            )
            self.audio = audio

    def on_media(
        self, kind: int, timestamp: int, info: MediaInfo, body: bytes | memoryview
    ) -> None:
        """Learn codecs, the keyframe interval and the AAC format from media messages."""
        if kind == TAG_VIDEO:
            video = self.video = self.video or VideoTrack()
            video.codec = info.codec or video.codec
            if info.sequence_header and info.codec == "h264":
                self._read_avc_config(video, body)
            if info.keyframe:
                if self._last_keyframe_ts is not None:
                    gap = ((timestamp - self._last_keyframe_ts) & 0xFFFFFFFF) / 1000
                    video.keyframe_interval = round(gap, 3) if gap > 0 else None
                self._last_keyframe_ts = timestamp
            return
        audio = self.audio = self.audio or AudioTrack()
        audio.codec = info.codec or audio.codec
        if info.sequence_header and info.codec == "aac" and len(body) >= 4:
            self._read_audio_specific_config(audio, body[2], body[3])

    @staticmethod
    def _read_avc_config(video: VideoTrack, body: bytes | memoryview) -> None:
        """The picture size (it overrides ``onMetaData``'s: the stream is what gets decoded)
        and codec string of an AVC sequence header; a header that cannot be read changes
        nothing (ffmpeg is the judge of whether it decodes)."""
        try:
            config = parse_avc_config(body[5:])  # after the 5-byte (legacy or Enhanced) header
        except AVCConfigError:
            return
        video.width, video.height = config.width, config.height
        video.codec_string = config.codec_string

    @staticmethod
    def _read_audio_specific_config(audio: AudioTrack, first: int, second: int) -> None:
        """ISO/IEC 14496-3 1.6.2.1: 5 bits object type, 4 bits rate index, 4 bits channels."""
        audio.object_type = first >> 3 or None
        rate_index = ((first & 0x07) << 1) | (second >> 7)
        if rate_index < len(_AAC_SAMPLE_RATES):
            audio.sample_rate = _AAC_SAMPLE_RATES[rate_index]
        channels = (second >> 3) & 0x0F
        if 0 < channels <= 7:
            audio.channels = 8 if channels == 7 else channels

    def reset_timing(self) -> None:
        """A new publisher (reconnect): keyframe spacing starts over."""
        self._last_keyframe_ts = None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value > 0 else None


def _int(value: object) -> int | None:
    number = _number(value)
    return int(number) if number else None
