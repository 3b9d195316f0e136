"""Recording a low-latency stream: the fMP4 segments :class:`~workers.llhls.LowLatencyStream`
completes, handed to :class:`~workers.recording.RecordingOutput` from memory with their
initialization segments (still one ffmpeg for live playback and the recording).

Names carry the session's tag (session and ownership generation), so that a recording continued
by another node never reuses a name: ``<tag>-<media sequence>.m4s`` for a segment and
``<tag>-init<n>.mp4`` for the ``n``-th initialization segment of the session here. The recording's
playlist then has an ``EXT-X-MAP`` wherever the initialization segment changes.
"""

from __future__ import annotations

from workers import llhls
from workers.m3u8 import Segment
from workers.recording import RecordingOutput


class FragmentedRecording:
    """Feeds a recording with the segments of one low-latency stream (see the module docstring)."""

    def __init__(self, recording: RecordingOutput, *, session_tag: str) -> None:
        self._recording = recording
        self._tag = session_tag
        self.stream: llhls.LowLatencyStream | None = None
        """The stream whose segments are recorded (set once the output exists)."""

    def on_segments(self, segments: list[llhls.Segment]) -> None:
        """``LowLatencyOutput`` callback: record each complete segment."""
        assert self.stream is not None
        for seg in segments:
            init = self.stream.maps.get(seg.map_id)
            if not seg.parts or init is None:
                continue
            init_name = f"{self._tag}-init{seg.map_id}.mp4"
            name = f"{self._tag}-{seg.msn}.m4s"
            entry = Segment(name, round(seg.duration, 6), seg.discontinuity, init_name)
            self._recording.on_files(entry, {init_name: init.data, name: seg.data})
