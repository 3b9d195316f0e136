"""The ``currentSession`` of a live stream object, as pydantic models.

The media side hands the API a typed status (:class:`workers.status.SessionStatus`, from
``api.live.stream_view.live_status``); :func:`current_session_output` maps it into these models,
the one place it becomes the JSON schema, so the OpenAPI document generated from them says
exactly what the stream object carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from api.schemas.base import iso_timestamp
from ingest.stats import AudioTrack, VideoTrack
from workers.output_state import OutputState
from workers.status import OutputReport, SessionStatus

OutputStateName = Literal["idle", "connecting", "live", "retrying", "failed", "stopped"]
"""The states of a supervised output as the API names them (see :func:`output_state_name`)."""

_STATE_NAMES: Mapping[OutputState, OutputStateName] = MappingProxyType(
    {
        OutputState.IDLE: "idle",
        OutputState.CONNECTING: "connecting",
        OutputState.LIVE: "live",
        OutputState.RETRYING: "retrying",
        OutputState.FAILED: "failed",
        OutputState.STOPPED: "stopped",
        OutputState.FINISHED: "stopped",
    }
)


def output_state_name(state: OutputState) -> OutputStateName:
    """``state`` as the API names it: an output ``finished`` (its input ended and it delivered
    everything) reads ``stopped``, as one stopped at the end of its session does."""
    return _STATE_NAMES[state]


class _Status(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        extra="ignore",
        json_schema_extra={"additionalProperties": False},
    )


class VideoTrackOutput(_Status):
    """The video the publisher sends, as far as it is known yet."""

    codec: str | None = Field(description="e.g. `h264`, `hevc`, `av1`.")
    width: int | None
    height: int | None
    fps: float | None = Field(description="Frames per second.")
    keyframe_interval: float | None = Field(description="Seconds between the last keyframes.")


class AudioTrackOutput(_Status):
    """The audio the publisher sends, as far as it is known yet."""

    codec: str | None = Field(description="e.g. `aac`, `mp3`, `opus`.")
    sample_rate: int | None = Field(description="Hz.")
    channels: int | None


class SessionOutputState(_Status):
    """One output of the live session (HLS, recording, a restream target)."""

    name: str = Field(description="`hls`, or `restream:<targetId>`.")
    state: OutputStateName
    dropped_frames: int = Field(description="Frames dropped because the output lagged.")
    last_error: str | None = Field(description="Why the last attempt failed (redacted).")


class CurrentSessionOutput(_Status):
    """The live session of a stream on this node, also while waiting in its reconnect window."""

    id: str = Field(description="24-hex id of the session (see `/v1/livestreams/{id}/sessions`).")
    started_at: str = Field(json_schema_extra={"format": "date-time"})
    client_address: str = Field(description="`host:port` of the current (or last) publisher.")
    encoder: str | None = Field(description="What the publisher says it is (`onMetaData`).")
    video: VideoTrackOutput | None = Field(description="Null for an audio-only publish.")
    audio: AudioTrackOutput | None = Field(description="Null for a video-only publish.")
    bitrate_kbps: float = Field(description="Incoming bitrate over the last seconds.")
    bytes_in: int = Field(description="Media bytes received in this session.")
    outputs: list[SessionOutputState]
    reconnecting: bool = Field(
        description="The publisher dropped and the session waits for it to come back within "
        "`reconnectWindowSeconds`."
    )
    reconnects: int = Field(default=0, description="Publishers that came back in this session.")
    renditions: list[str] = Field(
        default_factory=list,
        description="The renditions this session produces, `source` first: the stream's "
        "`renditions` less the rungs not below the source's height (never upscaled) and, "
        "without video, every rung. Empty until playback output starts.",
    )
    transcode_speed: float | None = Field(
        default=None,
        description="ffmpeg's speed while it transcodes a ladder (media seconds per second); "
        "below 1.0 it falls behind. Null without a transcoded rendition.",
    )
    dropped_renditions: list[str] = Field(
        default_factory=list,
        description="Renditions dropped in this session because the transcoding could not "
        "keep up (speed below 0.97 for 10 s): the top rung goes first, ffmpeg starts again "
        "without it, the source and the other renditions go on after a discontinuity. In "
        "low-latency mode also a rung whose output cannot be read (its playlist ends).",
    )


def current_session_output(status: SessionStatus | None) -> CurrentSessionOutput | None:
    """``status`` (the media side's, or ``None`` when not live) as the model."""
    if status is None:
        return None
    return CurrentSessionOutput(
        id=status.session_id,
        started_at=iso_timestamp(datetime.fromtimestamp(status.started_at, UTC)),
        client_address=status.client_address,
        encoder=status.encoder,
        video=_video(status.video),
        audio=_audio(status.audio),
        bitrate_kbps=status.bitrate_kbps,
        bytes_in=status.bytes_in,
        outputs=[_output(report) for report in status.outputs],
        reconnecting=status.reconnecting,
        reconnects=status.reconnects,
        renditions=list(status.renditions),
        transcode_speed=status.transcode_speed,
        dropped_renditions=list(status.dropped_renditions),
    )


def _output(report: OutputReport) -> SessionOutputState:
    status = report.status
    return SessionOutputState(
        name=status.name.rsplit("/", 1)[-1],
        state=output_state_name(status.state),
        dropped_frames=report.dropped_frames,
        last_error=status.last_error,
    )


def _video(video: VideoTrack | None) -> VideoTrackOutput | None:
    if video is None:
        return None
    return VideoTrackOutput(
        codec=video.codec,
        width=video.width,
        height=video.height,
        fps=video.fps,
        keyframe_interval=video.keyframe_interval,
    )


def _audio(audio: AudioTrack | None) -> AudioTrackOutput | None:
    if audio is None:
        return None
    return AudioTrackOutput(
        codec=audio.codec, sample_rate=audio.sample_rate, channels=audio.channels
    )
