"""One video frame out of a segment's bytes, as a JPEG or PNG image, with PyAV.

PyAV links the FFmpeg libraries its wheel bundles, so a thumbnail costs no ffmpeg process: the
segment is demuxed and decoded in memory (MPEG-TS, or fMP4 with its initialization segment in
front), the frame is scaled with ``frame.reformat`` (libswscale) and encoded with FFmpeg's
``mjpeg`` or ``png`` encoder. Pillow is not needed, and decoding and encoding share one library.

Everything here blocks (tens of milliseconds for a 1080p keyframe): call it in a worker thread.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import av.error
from av.video.codeccontext import VideoCodecContext

MIN_SIDE = 16
"""Smallest ``width`` or ``height`` a thumbnail may be asked for."""
MAX_SIDE = 1920
"""Largest ``width`` or ``height`` a thumbnail may be asked for."""
MAX_FRAMES = 2000
"""Frames decoded at most while looking for the one nearest a time (a segment holds far fewer)."""
JPEG_QUALITY = ("2", "6")
"""``qmin``/``qmax`` of the JPEG encoder (FFmpeg's 1 to 31 scale, lower is better)."""


@dataclass(frozen=True)
class ImageFormat:
    """An image format a thumbnail is encoded in."""

    extension: str
    """File extension in the URL (``jpg``, ``png``)."""
    encoder: str
    """FFmpeg encoder name."""
    pixel_format: str
    """Pixel format the encoder takes."""
    content_type: str
    """``Content-Type`` of the answer."""


FORMATS = {
    "jpg": ImageFormat("jpg", "mjpeg", "yuvj420p", "image/jpeg"),
    "png": ImageFormat("png", "png", "rgb24", "image/png"),
}


class ThumbnailUnavailable(Exception):
    """No thumbnail can be made of this media; the message says why."""


class NoVideo(ThumbnailUnavailable):
    """The media has no video track (an audio-only stream)."""


class UndecodableMedia(ThumbnailUnavailable):
    """The media could not be demuxed, or no video frame could be decoded from it."""


@dataclass(frozen=True)
class Thumbnail:
    """An encoded image."""

    data: bytes
    content_type: str
    width: int
    height: int


def fitted_size(source: tuple[int, int], width: int | None, height: int | None) -> tuple[int, int]:
    """The size of a ``source``-sized frame scaled to ``width`` or ``height`` (the other side
    follows the aspect ratio), or to fit inside the ``width`` by ``height`` box when both are
    given; the source size when neither is. Never below 1 pixel."""
    source_width, source_height = source
    if width is not None and (height is None or width * source_height <= height * source_width):
        return width, max(1, round(source_height * width / source_width))
    if height is not None:
        return max(1, round(source_width * height / source_height)), height
    return source_width, source_height


def render(
    media: bytes,
    image_format: ImageFormat,
    *,
    width: int | None = None,
    height: int | None = None,
    at: float | None = None,
) -> Thumbnail:
    """The frame of ``media`` nearest ``at`` seconds after its first frame (its first frame
    when ``at`` is ``None``), scaled (:func:`fitted_size`) and encoded."""
    frame = decode_frame(media, at)
    return encode(frame, image_format, fitted_size((frame.width, frame.height), width, height))


def decode_frame(media: bytes, at: float | None = None) -> av.VideoFrame:
    """See :func:`render`. Raises :class:`NoVideo` or :class:`UndecodableMedia`."""
    try:
        with av.open(io.BytesIO(media), mode="r") as container:
            if not container.streams.video:
                raise NoVideo("the stream has no video")
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"
            return _nearest(container.decode(stream), at)
    except av.error.FFmpegError as exc:
        raise UndecodableMedia(f"the segment could not be decoded: {exc}") from exc


def _nearest(frames: Iterator[av.VideoFrame], at: float | None) -> av.VideoFrame:
    """The first of ``frames``, or the one whose time after the first is nearest ``at``."""
    previous: tuple[float, av.VideoFrame] | None = None
    start: float | None = None
    for count, frame in enumerate(frames):
        time = float(frame.time) if frame.time is not None else 0.0
        start = time if start is None else start
        offset = time - start
        if at is None:
            return frame
        if offset >= at:
            if previous is not None and at - previous[0] < offset - at:
                return previous[1]
            return frame
        previous = (offset, frame)
        if count >= MAX_FRAMES:
            break
    if previous is None:
        raise UndecodableMedia("the segment holds no decodable video frame")
    return previous[1]


def encode(frame: av.VideoFrame, image_format: ImageFormat, size: tuple[int, int]) -> Thumbnail:
    """``frame`` scaled to ``size`` and encoded as one ``image_format`` image."""
    width, height = size
    context = av.CodecContext.create(image_format.encoder, "w")
    assert isinstance(context, VideoCodecContext)
    context.width, context.height = width, height
    context.pix_fmt = image_format.pixel_format
    context.time_base = Fraction(1, 1)
    if image_format.encoder == "mjpeg":
        context.options = {"qmin": JPEG_QUALITY[0], "qmax": JPEG_QUALITY[1]}
    scaled = frame.reformat(width=width, height=height, format=image_format.pixel_format)
    scaled.pts = 0
    packets = [*context.encode(scaled), *context.encode(None)]
    data = b"".join(bytes(packet) for packet in packets)
    if not data:
        raise UndecodableMedia(f"the {image_format.encoder} encoder gave no image")
    return Thumbnail(data, image_format.content_type, width, height)
