"""The live status of a session, typed: what the API renders as ``currentSession``
(:func:`api.schemas.current_session.current_session_output` maps it to the JSON schema)."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.stats import AudioTrack, VideoTrack
from workers.live_path import LivePath
from workers.output_state import OutputStatus


@dataclass(frozen=True)
class OutputReport:
    """One running output of a session."""

    status: OutputStatus
    """Its supervisor's status (redacted; a restream's error as tenants may see it)."""
    dropped_frames: int
    """Frames it dropped because it lagged."""


@dataclass(frozen=True)
class SessionStatus:
    """Who publishes, what it sends, and how each output is doing."""

    session_id: str
    """24-hex id of the session."""
    started_at: float
    """Wall-clock start of the session (Unix seconds)."""
    client_address: str
    """``host:port`` of the current (or last) publisher."""
    encoder: str | None
    """What the publisher says it is."""
    video: VideoTrack | None
    """The video track as far as known; ``None`` also when the publish has no video."""
    audio: AudioTrack | None
    """The audio track as far as known; ``None`` also when the publish has no audio."""
    bitrate_kbps: float
    """Incoming bitrate over the last seconds."""
    bytes_in: int
    """Media bytes received in the session."""
    outputs: tuple[OutputReport, ...]
    """Each running output: HLS first, then the restream targets."""
    reconnecting: bool
    """The publisher dropped and the session waits inside its reconnect window."""
    reconnects: int
    """Publishers that came back in this session."""
    renditions: tuple[str, ...] = ()
    """The renditions the session produces, ``source`` first (empty before its playback
    output started)."""
    transcode_speed: float | None = None
    """ffmpeg's speed for a ladder (below 1.0: falling behind); ``None`` without a rung."""
    dropped_renditions: tuple[str, ...] = ()
    """Rungs dropped because the transcoding could not keep up (or their output was
    unreadable)."""


def session_status(path: LivePath, *, now: float | None = None) -> SessionStatus:
    """The status of the session ``path`` runs; ``now`` (the hub's clock by default) dates
    the bitrate."""
    hub = path.hub
    stats = hub.stats
    tracks = hub.tracks
    return SessionStatus(
        session_id=path.info.session_id,
        started_at=path.info.started_at,
        client_address=path.client_address,
        encoder=stats.encoder,
        video=stats.video if tracks is None or tracks.has_video else None,
        audio=stats.audio if tracks is None or tracks.has_audio else None,
        bitrate_kbps=hub.bitrate.kbps(hub.clock() if now is None else now),
        bytes_in=hub.bytes_in,
        outputs=tuple(OutputReport(s, dropped) for s, dropped in path.output_statuses()),
        reconnecting=path.reconnecting,
        reconnects=path.reconnects,
        renditions=path.outputs.renditions,
        transcode_speed=path.outputs.transcode_speed,
        dropped_renditions=path.outputs.dropped_renditions,
    )
