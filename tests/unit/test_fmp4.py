"""The fragmented MP4 reader on real ffmpeg output: codec strings, keyframe flags and timing
(checked against PyAV's demuxer), any chunking of the bytes, and refusal of bad input."""

from __future__ import annotations

import io
import itertools
import random
import struct

import av
import pytest

from tests.fmp4_source import AAC, AUDIO, AV1, H264, HEVC, OPUS, VIDEO, fragmented_mp4
from workers.fmp4 import Event, FMP4Error, Fragment, FragmentReader, InitSegment


@pytest.fixture(scope="module")
def h264_aac() -> bytes:
    return fragmented_mp4(VIDEO + AUDIO, H264 + AAC)


def read(data: bytes, chunks: list[int] | None = None) -> list[Event]:
    reader = FragmentReader()
    events: list[Event] = []
    if chunks is None:
        events += reader.feed(data)
    else:
        pos = 0
        for size in chunks:
            events += reader.feed(data[pos : pos + size])
            pos += size
        assert pos >= len(data)
    reader.close()
    return events


def split(events: list[Event]) -> tuple[InitSegment, list[Fragment]]:
    init, *fragments = events
    assert isinstance(init, InitSegment)
    assert all(isinstance(f, Fragment) for f in fragments)
    return init, fragments  # type: ignore[return-value]


def video_keyframe_dts(data: bytes) -> list[float]:
    """Decode times of the video keyframes, as PyAV's (libavformat's) demuxer reads them."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return [
            float(p.dts * stream.time_base)
            for p in container.demux(stream)
            if p.is_keyframe and p.dts is not None
        ]


def test_h264_aac_tracks_and_codec_strings(h264_aac: bytes) -> None:
    init, fragments = split(read(h264_aac))
    video, audio = init.tracks
    assert (video.kind, audio.kind) == ("video", "audio")
    assert video.track_id != audio.track_id
    assert audio.timescale == 48000
    assert video.timescale > 0
    # libx264 Main profile (0x4d), no constraint flags, level 3.1 (0x1f); AAC-LC.
    assert init.codecs == "avc1.4d401f,mp4a.40.2"
    assert (video.width, video.height, audio.width, audio.height) == (320, 240, 0, 0)
    assert len(fragments) >= 10


def test_keyframe_flags_match_the_demuxer(h264_aac: bytes) -> None:
    _init, fragments = split(read(h264_aac))
    keyframes = [f.decode_time for f in fragments if f.starts_with_keyframe]
    assert len(keyframes) == 3  # 3 s at -g 30, 30 fps
    assert keyframes == pytest.approx(video_keyframe_dts(h264_aac), abs=1e-3)
    assert fragments[0].starts_with_keyframe


def test_fragments_are_contiguous_and_cover_the_stream(h264_aac: bytes) -> None:
    init, fragments = split(read(h264_aac))
    for track in init.tracks:
        runs = [r for f in fragments for r in f.runs if r.track_id == track.track_id]
        for before, after in itertools.pairwise(runs):
            assert after.decode_time == before.decode_time + before.duration
        assert runs[-1].decode_time + runs[-1].duration == pytest.approx(
            3.0 * track.timescale, abs=0.1 * track.timescale
        )
    for before, after in itertools.pairwise(fragments):
        assert after.sequence == before.sequence + 1
    body = init.data + b"".join(f.data for f in fragments)
    assert h264_aac.startswith(body)
    assert h264_aac[len(body) + 4 : len(body) + 8] == b"mfra"  # the trailer: no media


def test_any_chunking_gives_the_same_events(h264_aac: bytes) -> None:
    whole = read(h264_aac)
    assert read(h264_aac, [1] * len(h264_aac)) == whole
    rng = random.Random(13)
    sizes = [rng.randint(1, 5000) for _ in range(len(h264_aac))]
    assert read(h264_aac, sizes) == whole


def test_hevc_tagged_hvc1() -> None:
    data = fragmented_mp4(VIDEO + AUDIO, HEVC + AAC, remux=["-tag:v", "hvc1"])
    init, fragments = split(read(data))
    # Main profile (1), compatibility flag 1 and 2 reversed (6), Main tier level 2 (60),
    # progressive_source and frame_only constraint flags (0x90).
    assert init.codecs == "hvc1.1.6.L60.90,mp4a.40.2"
    keyframes = [f.decode_time for f in fragments if f.starts_with_keyframe]
    assert keyframes == pytest.approx(video_keyframe_dts(data), abs=1e-3)


def test_hevc_copied_as_ffmpeg_tags_it() -> None:
    init, _ = split(read(fragmented_mp4(VIDEO, HEVC)))
    assert init.codecs == "hev1.1.6.L60.90"


def test_av1_8_and_10_bit() -> None:
    data = fragmented_mp4(VIDEO + AUDIO, AV1 + AAC)
    init, fragments = split(read(data))
    assert init.codecs == "av01.0.00M.08,mp4a.40.2"  # Main profile, level 2.0, Main tier
    keyframes = [f.decode_time for f in fragments if f.starts_with_keyframe]
    assert keyframes == pytest.approx(video_keyframe_dts(data), abs=1e-3)
    init10, _ = split(read(fragmented_mp4(VIDEO, [*AV1, "-pix_fmt", "yuv420p10le"])))
    assert init10.codecs == "av01.0.00M.10"


def test_audio_only_fragments_are_all_independent() -> None:
    init, fragments = split(read(fragmented_mp4(AUDIO, OPUS)))
    assert [t.kind for t in init.tracks] == ["audio"]
    assert init.codecs == "opus"
    assert init.video is None
    assert all(f.starts_with_keyframe for f in fragments)
    assert sum(f.duration for f in fragments) == pytest.approx(3.0, abs=0.1)


def test_truncated_stream_is_refused_at_close(h264_aac: bytes) -> None:
    for cut in (10, 500, len(h264_aac) // 2):
        reader = FragmentReader()
        reader.feed(h264_aac[:cut])
        with pytest.raises(FMP4Error, match="stream ends inside"):
            reader.close()


def test_garbage_is_refused_at_once() -> None:
    rng = random.Random(7)
    garbage = bytes(rng.randrange(256) for _ in range(4096))
    with pytest.raises(FMP4Error):
        FragmentReader().feed(garbage)
    with pytest.raises(FMP4Error, match="must begin with ftyp"):
        FragmentReader().feed(struct.pack(">I4s", 16, b"moof") + bytes(8))


def test_garbage_after_the_init_segment_is_refused(h264_aac: bytes) -> None:
    init, _ = split(read(h264_aac))
    reader = FragmentReader()
    reader.feed(init.data)
    with pytest.raises(FMP4Error, match="not an MP4 box"):
        reader.feed(b"\x00\x00\x00\x10\xff\xfe\x00\x01" + bytes(8))


def test_an_oversized_box_is_refused_before_it_is_buffered(h264_aac: bytes) -> None:
    init, _ = split(read(h264_aac))
    reader = FragmentReader(max_box_bytes=1 << 20)
    reader.feed(init.data)
    with pytest.raises(FMP4Error, match="exceeds"):
        reader.feed(struct.pack(">I4s", 1 << 30, b"moof"))


def test_a_box_overrunning_its_parent_is_refused(h264_aac: bytes) -> None:
    init, fragments = split(read(h264_aac))
    moof = bytearray(fragments[0].data)
    # The first child of moof (mfhd, at offset 8) claims more bytes than moof holds.
    struct.pack_into(">I", moof, 8, len(moof))
    reader = FragmentReader()
    reader.feed(init.data)
    with pytest.raises(FMP4Error, match="overruns"):
        reader.feed(bytes(moof))


def test_mdat_without_moof_is_refused(h264_aac: bytes) -> None:
    init, _ = split(read(h264_aac))
    reader = FragmentReader()
    reader.feed(init.data)
    with pytest.raises(FMP4Error, match="mdat without moof"):
        reader.feed(struct.pack(">I4s", 12, b"mdat") + bytes(4))


def test_a_new_init_segment_starts_a_new_run(h264_aac: bytes) -> None:
    whole = read(h264_aac)
    audio_only = fragmented_mp4(AUDIO, OPUS, seconds=1)
    end = len(h264_aac) - struct.unpack_from(">I", h264_aac, h264_aac.rfind(b"mfra") - 4)[0]
    events = read(h264_aac[:end] + audio_only)
    inits = [e for e in events if isinstance(e, InitSegment)]
    assert [i.codecs for i in inits] == ["avc1.4d401f,mp4a.40.2", "opus"]
    assert events[: len(whole)] == whole
