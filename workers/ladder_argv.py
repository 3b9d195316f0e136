"""Pure builders of the ffmpeg command line of an adaptive-bitrate ladder: one ffmpeg per stream
that reads the publish once, copies it as the ``source`` rendition and encodes every rung.

ffmpeg decodes the input's video once and feeds each output's scaler and encoder from it
(``-map 0:v:0`` in every rung's output), so a ladder costs one decode plus one encode per rung.
Every rung's keyframes are the source's (``-force_key_frames source``, and libx264 adds none of
its own: ``-g`` far above any GOP, ``-sc_threshold 0``), so every rendition is cut into segments
at the same instants and a player can switch between renditions at any segment boundary. Audio
is copied into every rendition as it comes (no second encode; the same packets everywhere).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from workers.argv import (
    LOW_LATENCY_FRAGMENT_SECONDS,
    LOW_LATENCY_PROBESIZE,
    hls_output_argv,
    input_argv,
)
from workers.renditions import H264_PROFILE, Rung

X264_PRESET = "veryfast"
"""libx264's preset for standard-mode rungs: about a third of ``medium``'s CPU for a few per
cent more bits at the same quality."""
X264_LOW_LATENCY_PRESET = "superfast"
"""libx264's preset for low-latency rungs, with ``-tune zerolatency`` (no B-frames, no
look-ahead: a frame leaves the encoder as soon as it is encoded)."""
NO_OWN_KEYFRAMES_GOP = 100_000
"""``-g`` for every rung: far above any publisher's GOP, so libx264 places no keyframe of its
own and every rung's keyframes are the forced ones (the source's)."""


@dataclass(frozen=True)
class RungOutput:
    """Where one rung's HLS output goes (standard mode)."""

    rung: Rung
    segment_pattern: str
    """Segment path with a ``%d`` counter."""
    playlist_path: str
    """ffmpeg's private playlist of the rung."""


def rung_encode_argv(rung: Rung, *, low_latency: bool = False) -> list[str]:
    """The maps and codec options of one rung's output: the first video stream scaled to the
    rung's height (width after the source's aspect ratio, even) and encoded with libx264 at the
    rung's bitrate, its keyframes the source's; the audio, if any, copied."""
    preset = X264_LOW_LATENCY_PRESET if low_latency else X264_PRESET
    return [
        "-map",
        "0:v:0",
        "-map",
        "0:a?",
        "-vf",
        f"scale=-2:{rung.height}:flags=bilinear,format=yuv420p",
        "-c:v",
        "libx264",
        "-preset",
        preset,
        *(["-tune", "zerolatency"] if low_latency else []),
        "-profile:v",
        H264_PROFILE,
        "-level:v",
        rung.level,
        "-b:v",
        f"{rung.video_kbps}k",
        "-maxrate",
        f"{rung.maxrate_kbps}k",
        "-bufsize",
        f"{rung.bufsize_kbits}k",
        "-force_key_frames",
        "source",
        "-g",
        str(NO_OWN_KEYFRAMES_GOP),
        "-sc_threshold",
        "0",
        "-c:a",
        "copy",
    ]


def ladder_hls_argv(
    ffmpeg: str,
    *,
    segment_seconds: float,
    source_pattern: str,
    source_playlist: str,
    rungs: Sequence[RungOutput],
    start_number: int = 0,
    list_size: int = 10,
    loglevel: str = "warning",
) -> list[str]:
    """FLV on stdin -> the source rendition copied (as :func:`workers.argv.hls_argv` does) and
    each rung encoded, each rendition an HLS output of its own with its own private playlist.
    The ``-progress`` block on stdout (``speed=``) is the whole command's."""
    argv = [
        *input_argv(ffmpeg, loglevel=loglevel, copy=False),
        "-map",
        "0:v?",
        "-map",
        "0:a?",
        "-c",
        "copy",
        *hls_output_argv(
            segment_seconds=segment_seconds,
            segment_pattern=source_pattern,
            playlist_path=source_playlist,
            start_number=start_number,
            list_size=list_size,
        ),
    ]
    for output in rungs:
        argv += rung_encode_argv(output.rung)
        argv += hls_output_argv(
            segment_seconds=segment_seconds,
            segment_pattern=output.segment_pattern,
            playlist_path=output.playlist_path,
            start_number=start_number,
            list_size=list_size,
        )
    return argv


def ladder_llhls_argv(
    ffmpeg: str,
    *,
    rungs: Sequence[Rung],
    fds: Sequence[int],
    hevc: bool = False,
    progress_fd: int | None = None,
    loglevel: str = "warning",
) -> list[str]:
    """FLV on stdin -> fragmented MP4 of the source rendition on stdout (as
    :func:`workers.argv.llhls_argv` writes it) and of each rung on its own pipe, the ``n``-th
    rung on file descriptor ``fds[n]`` (the process is started with those pipes' write ends
    passed on: :class:`workers.media_pipes.MediaPipe`). Every output is fragmented the same
    way and the rungs' keyframes are the source's, so every rung's parts and segments line up
    with the source's."""
    if len(fds) != len(rungs):
        raise ValueError(f"{len(rungs)} rungs need as many pipes, not {len(fds)}")
    head = input_argv(
        ffmpeg, loglevel=loglevel, probesize=LOW_LATENCY_PROBESIZE, progress=False, copy=False
    )
    if progress_fd is not None:  # ffmpeg's speed, on a pipe of its own (stdout is media)
        at = head.index("-nostats") + 1
        head[at:at] = ["-progress", f"pipe:{progress_fd}", "-stats_period", "1"]
    fragment = [
        "-f",
        "mp4",
        "-movflags",
        "+frag_keyframe+empty_moov+default_base_moof",
        "-frag_duration",
        str(round(LOW_LATENCY_FRAGMENT_SECONDS * 1_000_000)),
    ]
    argv = [
        *head,
        "-map",
        "0:v?",
        "-map",
        "0:a?",
        "-c",
        "copy",
        *(["-tag:v", "hvc1"] if hevc else []),
        *fragment,
        "pipe:1",
    ]
    for rung, fd in zip(rungs, fds, strict=True):
        argv += [*rung_encode_argv(rung, low_latency=True), *fragment, f"pipe:{fd}"]
    return argv
