"""Thumbnails decoded and encoded with PyAV from real segments of ffmpeg's test pattern."""

from __future__ import annotations

from dataclasses import dataclass

import imageio_ffmpeg
import pytest

from tests.thumbnail_support import assert_pattern, look_at, make_media
from workers.thumbnail_codec import (
    FORMATS,
    NoVideo,
    UndecodableMedia,
    decode_frame,
    fitted_size,
    render,
)
from workers.thumbnail_sources import TimeBeyondEnd, recorded_point


@dataclass(frozen=True)
class Media:
    ts: bytes
    fmp4: bytes
    audio: bytes


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    directory = tmp_path_factory.mktemp("thumbnail-media")
    return Media(
        ts=make_media(ffmpeg, directory / "video.ts"),
        fmp4=make_media(ffmpeg, directory / "video.mp4"),
        audio=make_media(ffmpeg, directory / "audio.ts", audio_only=True),
    )


def test_the_first_frame_of_a_segment_at_its_own_size(media: Media) -> None:
    thumbnail = render(media.ts, FORMATS["jpg"])
    assert (thumbnail.width, thumbnail.height, thumbnail.content_type) == (640, 360, "image/jpeg")
    assert_pattern(thumbnail.data, (640, 360))


def test_png_from_fragmented_mp4_scaled_to_fit_a_box(media: Media) -> None:
    thumbnail = render(media.fmp4, FORMATS["png"], width=200, height=200)
    assert thumbnail.content_type == "image/png"
    assert_pattern(thumbnail.data, (200, 112), codec="png")


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (None, None, (640, 360)),
        (320, None, (320, 180)),
        (None, 90, (160, 90)),
        (320, 320, (320, 180)),  # fits inside the box: width decides
        (1920, 90, (160, 90)),  # height decides
        (1920, None, (1920, 1080)),
        (16, None, (16, 9)),
    ],
)
def test_scaling_keeps_the_aspect_ratio(
    width: int | None, height: int | None, expected: tuple[int, int]
) -> None:
    assert fitted_size((640, 360), width, height) == expected


def test_a_scaled_jpeg_has_the_asked_size(media: Media) -> None:
    thumbnail = render(media.ts, FORMATS["jpg"], height=90)
    assert look_at(thumbnail.data).width == 160 == thumbnail.width


def test_the_frame_nearest_a_time_is_chosen(media: Media) -> None:
    first = decode_frame(media.ts)
    later = decode_frame(media.ts, 1.0)
    assert first.time is not None and later.time is not None
    assert abs(later.time - first.time - 1.0) < 1 / 60
    last = decode_frame(media.ts, 60.0)  # past the end: the last frame
    assert last.time is not None and abs(last.time - first.time - (2.0 - 1 / 30)) < 1 / 60


def test_audio_only_media_has_no_video(media: Media) -> None:
    with pytest.raises(NoVideo, match="no video"):
        render(media.audio, FORMATS["jpg"])


def test_garbage_is_undecodable() -> None:
    with pytest.raises(UndecodableMedia, match="could not be decoded"):
        render(b"\x47not a transport stream" * 100, FORMATS["png"])


PLAYLIST = """#EXTM3U
#EXT-X-TARGETDURATION:2
#EXT-X-MAP:URI="init.mp4"
#EXTINF:2.000,
s-0.m4s
#EXTINF:1.500,
s-1.m4s
#EXT-X-ENDLIST
"""


def test_the_segment_covering_a_time_of_a_recording() -> None:
    point = recorded_point(PLAYLIST, 2.25)
    assert (point.segment.name, point.segment.init, point.offset) == ("s-1.m4s", "init.mp4", 0.25)
    assert recorded_point(PLAYLIST, 0).segment.name == "s-0.m4s"
    assert recorded_point(PLAYLIST, None).offset == 1.75  # default: min(2 s, half of 3.5 s)
    end = recorded_point(PLAYLIST, 3.5)
    assert (end.segment.name, end.offset) == ("s-1.m4s", 1.5)
    with pytest.raises(TimeBeyondEnd, match=r"time 3.6 is beyond the end .*3.500 s"):
        recorded_point(PLAYLIST, 3.6)
    with pytest.raises(UndecodableMedia, match="no segment"):
        recorded_point("#EXTM3U\n", None)
