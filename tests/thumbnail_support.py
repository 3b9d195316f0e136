"""Test media for thumbnails (ffmpeg's ``testsrc2`` pattern) and checks of the images made."""

from __future__ import annotations

import io
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

import av

PATTERN = "testsrc2=size=640x360:rate=30"


def make_media(ffmpeg: str, path: Path, *, seconds: float = 2, audio_only: bool = False) -> bytes:
    """A ``seconds`` long MPEG-TS (``.ts``) or fragmented MP4 (``.mp4``) file at ``path``:
    640x360 H.264 ``testsrc2`` with a keyframe every second, or a sine tone alone; its bytes."""
    argv = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"]
    if audio_only:
        argv += ["-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac"]
    else:
        argv += ["-i", f"{PATTERN}:duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast"]
        argv += ["-g", "30", "-pix_fmt", "yuv420p"]
    if path.suffix == ".mp4":
        argv += ["-movflags", "+frag_keyframe+empty_moov+default_base_moof"]
    subprocess.run([*argv, str(path)], check=True, timeout=120)
    return path.read_bytes()


@dataclass(frozen=True)
class Picture:
    """What a decoded image shows."""

    codec: str
    width: int
    height: int
    spread: float
    """Standard deviation of its RGB bytes (0 for a blank image)."""
    colours: int
    """Distinct colours, each channel reduced to 2 bits (64 at most)."""


def look_at(image: bytes) -> Picture:
    """Decode a JPEG or PNG with PyAV and describe it."""
    with av.open(io.BytesIO(image)) as container:
        stream = container.streams.video[0]
        frame = next(container.decode(stream))
        codec = stream.codec_context.name
    rgb = frame.reformat(format="rgb24")
    plane = rgb.planes[0]
    rows = [
        bytes(plane)[y * plane.line_size : y * plane.line_size + rgb.width * 3]
        for y in range(rgb.height)
    ]
    pixels = b"".join(rows)
    sample = pixels[::5]
    colours = {
        (pixels[i] >> 6, pixels[i + 1] >> 6, pixels[i + 2] >> 6)
        for i in range(0, len(pixels) - 2, 3 * 7)
    }
    return Picture(codec, frame.width, frame.height, statistics.pstdev(sample), len(colours))


def assert_pattern(image: bytes, size: tuple[int, int], codec: str = "mjpeg") -> Picture:
    """Assert ``image`` is a ``codec`` image of ``size`` showing the colourful test pattern."""
    picture = look_at(image)
    assert (picture.codec, picture.width, picture.height) == (codec, *size), picture
    assert picture.spread > 40 and picture.colours >= 8, picture  # not blank: the colour bars
    return picture
