"""The multivariant playlist of a ladder and what each variant declares."""

from __future__ import annotations

from ingest.stats import AudioTrack, VideoTrack
from workers.ladder_playlist import (
    Variant,
    audio_codec_string,
    join_codecs,
    render_multivariant,
    rung_resolution,
    rung_video_codec_string,
    segment_bandwidth,
)
from workers.renditions import RUNGS


def test_the_multivariant_playlist_lists_every_attribute_players_choose_by() -> None:
    text = render_multivariant(
        [
            Variant("source.m3u8", 5_000_000, 4_000_000, (1280, 720), "avc1.640028,mp4a.40.2", 30),
            Variant("360p.m3u8", 1_000_000, 900_000, (640, 360), None, None),
        ]
    )
    assert text == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=5000000,AVERAGE-BANDWIDTH=4000000,"
        'CODECS="avc1.640028,mp4a.40.2",RESOLUTION=1280x720,FRAME-RATE=30.000\n'
        "source.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=1000000,AVERAGE-BANDWIDTH=900000,RESOLUTION=640x360\n"
        "360p.m3u8\n"
    )


def test_bandwidth_is_the_peak_and_the_average_of_the_segments() -> None:
    assert segment_bandwidth([(250_000, 2.0), (100_000, 1.0), (0, 0.0)]) == (1_000_000, 933_334)
    assert segment_bandwidth([]) == (0, 0)


def test_codec_strings_of_rungs_and_copied_audio() -> None:
    assert rung_video_codec_string(RUNGS["720p"]) == "avc1.4D4020"
    assert rung_video_codec_string(RUNGS["240p"]) == "avc1.4D401E"
    assert audio_codec_string(AudioTrack("aac", 48_000, 2, object_type=5)) == "mp4a.40.5"
    assert audio_codec_string(AudioTrack("aac")) == "mp4a.40.2"
    assert audio_codec_string(AudioTrack("mp3")) == "mp4a.40.34"
    assert audio_codec_string(AudioTrack("speex")) is None
    assert join_codecs("avc1.4D401E", None, has_audio=False) == "avc1.4D401E"
    assert join_codecs("avc1.4D401E", None, has_audio=True) is None, "never a partial list"
    assert join_codecs(None, "mp4a.40.2", has_audio=True) is None


def test_a_rung_keeps_the_source_aspect_ratio() -> None:
    assert rung_resolution(RUNGS["480p"], VideoTrack("h264", 1920, 1080)) == (854, 480)
    assert rung_resolution(RUNGS["480p"], VideoTrack("h264", 1440, 1080)) == (640, 480)
