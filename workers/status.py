"""The live status of a session as the API shows it (``currentSession``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ingest.stats import AudioTrack, VideoTrack
from workers.stream_outputs import StreamOutputs


def current_session(outputs: StreamOutputs, *, now: float | None = None) -> dict[str, Any]:
    """``currentSession``: who publishes, what it sends, how each output is doing."""
    hub = outputs.hub
    stats = hub.stats
    return {
        "id": outputs.info.session_id,
        "startedAt": _iso(outputs.info.started_at),
        "clientAddress": outputs.client_address,
        "encoder": stats.encoder,
        "video": _video(stats.video) if hub.tracks is None or hub.tracks.has_video else None,
        "audio": _audio(stats.audio) if hub.tracks is None or hub.tracks.has_audio else None,
        "bitrateKbps": hub.bitrate.kbps(hub.clock() if now is None else now),
        "bytesIn": hub.bytes_in,
        "outputs": [
            {
                "name": status.name.rsplit("/", 1)[-1],
                "state": status.state.value,
                "droppedFrames": dropped,
                "lastError": status.last_error,
            }
            for status, dropped in outputs.output_statuses()
        ],
        "reconnecting": outputs.reconnecting,
        "reconnects": outputs.reconnects,
    }


def _video(video: VideoTrack | None) -> dict[str, Any] | None:
    if video is None:
        return None
    return {
        "codec": video.codec,
        "width": video.width,
        "height": video.height,
        "fps": video.fps,
        "keyframeInterval": video.keyframe_interval,
    }


def _audio(audio: AudioTrack | None) -> dict[str, Any] | None:
    if audio is None:
        return None
    return {"codec": audio.codec, "sampleRate": audio.sample_rate, "channels": audio.channels}


def _iso(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
