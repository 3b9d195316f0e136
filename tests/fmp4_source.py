"""Real fragmented MP4 for the low-latency HLS tests: lavfi test sources encoded by the bundled
ffmpeg, pushed through FLV (as an RTMP publish reaches the relay) into the fragmented MP4
muxer with the flags of the low-latency pipeline."""

from __future__ import annotations

import subprocess

from config.settings import Settings
from workers.argv import llhls_argv
from workers.ffmpeg_binary import resolve_ffmpeg


def fragment_flags(*, audio_only: bool) -> list[str]:
    """The fragmenting flags of the low-latency pipeline (:func:`workers.argv.llhls_argv`)."""
    argv = llhls_argv("ffmpeg", audio_only=audio_only)
    return argv[argv.index("-movflags") - 2 : -1]


VIDEO = ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=30"]
AUDIO = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
H264 = ["-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "superfast"]
H264 += ["-profile:v", "main", "-level", "3.1", "-g", "30"]
HEVC = ["-pix_fmt", "yuv420p", "-c:v", "libx265", "-preset", "ultrafast"]
HEVC += ["-x265-params", "log-level=error:keyint=30:min-keyint=30:scenecut=0"]
AV1 = ["-c:v", "libsvtav1", "-preset", "10", "-g", "30", "-svtav1-params", "lp=1"]
AAC = ["-c:a", "aac"]
OPUS = ["-c:a", "libopus"]


def fragmented_mp4(
    sources: list[str], codecs: list[str], *, seconds: float = 3.0, remux: list[str] = ()
) -> bytes:
    """Encode ``sources`` with ``codecs`` into FLV, then remux it (``-c copy`` plus ``remux``)
    into fragmented MP4, as the low-latency pipeline does."""
    ffmpeg = resolve_ffmpeg(Settings())
    quiet = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin"]
    encode = [*quiet, *sources, "-t", str(seconds), *codecs, "-f", "flv", "pipe:1"]
    flv = subprocess.run(encode, capture_output=True, check=True, timeout=60).stdout
    to_mp4 = [*quiet, "-probesize", "32768", "-f", "flv", "-i", "pipe:0", "-c", "copy"]
    audio_only = not any(arg.startswith("testsrc") for arg in sources)
    to_mp4 += [*remux, *fragment_flags(audio_only=audio_only), "pipe:1"]
    result = subprocess.run(to_mp4, input=flv, capture_output=True, check=True, timeout=60)
    return result.stdout
