"""Low-latency HLS packaging: each RFC 8216bis rule checked on the rendered playlists, from real
ffmpeg fragments where the media matters and from hand-made fragments where the timing does;
the blocking-reload decision table; delta updates."""

from __future__ import annotations

import io
import itertools
import re
from pathlib import Path

import av
import pytest

from tests.fmp4_source import AAC, AUDIO, H264, HEVC, OPUS, VIDEO, fragmented_mp4
from tests.llhls_support import (
    INIT,
    OTHER_INIT,
    START,
    attr,
    check_conformance,
    package,
    parse,
    stream,
)
from workers.fmp4 import Fragment, FragmentReader
from workers.llhls import (
    Answer,
    LowLatencyStream,
    Position,
    Reject,
    Wait,
    reload_decision,
)
from workers.llhls_part_target import PART_TARGET
from workers.llhls_playlist import PlaylistCache, map_uri, part_uri, render, segment_uri


@pytest.fixture(scope="module")
def h264_aac() -> bytes:
    return fragmented_mp4(VIDEO + AUDIO, H264 + AAC, seconds=4)


@pytest.fixture(scope="module")
def hevc() -> bytes:
    return fragmented_mp4(VIDEO, HEVC, seconds=4, remux=["-tag:v", "hvc1"])


def test_version_is_9_for_skip_and_map(h264_aac: bytes) -> None:
    s, _, _ = package(h264_aac)
    assert parse(render(s)).tags["#EXT-X-VERSION"] == "9"


def test_every_segment_rounds_to_at_most_the_target_duration(hevc: bytes) -> None:
    s, _, _ = package(hevc, segment_target=2.0)
    playlist = parse(render(s))
    target = int(playlist.tags["#EXT-X-TARGETDURATION"])
    assert target == 2
    complete = [seg for seg in playlist.segments if seg.duration is not None]
    assert len(complete) >= 1
    assert all(round(seg.duration) <= target for seg in complete)  # type: ignore[arg-type]


def test_a_keyframe_interval_equal_to_the_segment_target_starts_every_segment() -> None:
    """Ten parts of 0.2 s add up to 1.9999999999999998 s in floating point: the keyframe at
    2 s must still cut, or every other segment would be cut at 2.4 s without a keyframe and a
    player starting in it could not play from its start."""
    s, feed = stream(segment_target=2.0)
    feed.gops(4, gop=2.0)
    complete = [seg for seg in s.segments if seg.complete]
    assert len(complete) == 3
    assert all(seg.parts[0].independent for seg in s.segments)
    assert [seg.duration for seg in complete] == pytest.approx([2.0, 2.0, 2.0])


def test_a_long_keyframe_interval_is_cut_below_the_target_duration() -> None:
    s, feed = stream(segment_target=2.0)
    feed.gops(2, gop=5.0)
    playlist = parse(render(s))
    durations = [seg.duration for seg in playlist.segments if seg.duration is not None]
    assert durations and all(d is not None and d < 2.5 for d in durations)
    # Cut at 2.4 s and 4.8 s without a keyframe, then at the keyframe at 5 s.
    assert [seg.duration for seg in s.segments][:4] == pytest.approx([2.4, 2.4, 0.2, 2.4])
    assert [seg.parts[0].independent for seg in s.segments][:4] == [True, False, False, True]


def test_server_control_and_part_inf(h264_aac: bytes) -> None:
    s, _, _ = package(h264_aac)
    tags = parse(render(s)).tags
    part_target = float(attr(tags["#EXT-X-PART-INF"], "PART-TARGET"))
    assert part_target == pytest.approx(0.209)
    control = tags["#EXT-X-SERVER-CONTROL"]
    assert attr(control, "CAN-BLOCK-RELOAD") == "YES"
    assert float(attr(control, "PART-HOLD-BACK")) >= round(3 * part_target, 3)
    target = int(tags["#EXT-X-TARGETDURATION"])
    assert float(attr(control, "CAN-SKIP-UNTIL")) >= 6 * target


def test_map_and_program_date_time_on_every_segment(h264_aac: bytes) -> None:
    s, _, init = package(h264_aac)
    playlist = parse(render(s))
    assert playlist.segments[0].map == map_uri(0)
    assert [seg.map for seg in playlist.segments[1:]] == [None] * (len(playlist.segments) - 1)
    assert s.maps[0].data == init.data
    times = [seg.date_time for seg in playlist.segments]
    assert None not in times
    assert times[0] == pytest.approx(START, abs=0.001)
    for seg, after in itertools.pairwise(playlist.segments):
        assert after.date_time == pytest.approx(seg.date_time + seg.duration, abs=0.002)  # type: ignore[operator]


def test_independent_exactly_on_parts_that_start_with_a_keyframe(h264_aac: bytes) -> None:
    s, _, init = package(h264_aac)
    listed = [p for seg in parse(render(s)).segments for p in seg.parts]
    assert any(independent for _, _, independent in listed)
    assert not all(independent for _, _, independent in listed)
    numbers = {part_uri(p.number): p for seg in s.segments for p in seg.parts}
    for _, uri, independent in listed:
        reader = FragmentReader()
        fragment = reader.feed(init.data + numbers[uri].data)[1]
        assert isinstance(fragment, Fragment)
        assert fragment.starts_with_keyframe == independent, uri


def test_audio_only_parts_are_all_independent() -> None:
    s, _, _ = package(fragmented_mp4(AUDIO, OPUS, seconds=3))
    parts = [p for seg in parse(render(s)).segments for p in seg.parts]
    assert parts and all(independent for _, _, independent in parts)


def test_part_durations_within_the_part_target_and_short_ones_end_a_segment(
    hevc: bytes, h264_aac: bytes
) -> None:
    for data in (hevc, h264_aac, fragmented_mp4(AUDIO, AAC, seconds=3)):
        s, _, _ = package(data, segment_target=2.0)
        s.end()
        playlist = parse(render(s))
        target = float(attr(playlist.tags["#EXT-X-PART-INF"], "PART-TARGET"))
        parts = [part for seg in playlist.segments for part in seg.parts]
        assert all(d <= target for d, _, _ in parts)
        assert s.overlong_parts == 0
        for seg in playlist.segments:
            assert all(d >= 0.85 * target or ind for d, _, ind in seg.parts[:-1]), seg
    # The HEVC source has a short fragment before a keyframe in mid-segment: it ended one.
    s, _, _ = package(hevc, segment_target=2.0)
    complete = [seg for seg in s.segments if seg.complete]
    assert any(seg.parts[-1].duration < 0.85 * s.part_target for seg in complete)
    assert any(seg.duration < 2.0 for seg in complete)


def test_the_first_part_of_a_run_lengthened_to_keep_audio_in_sync_is_not_counted() -> None:
    """Audio that starts 21 ms before video: without an edit list ffmpeg lengthens the first
    video sample by that much, so a run's first fragment can outrun the part target. It is
    declared at the part target like any other; only later ones (a jump in the publisher's
    timestamps) are counted for the output to report."""
    s, feed = stream(part_target=PART_TARGET, segment_target=2.0)
    feed.add(0.221, keyframe=True)
    feed.add(0.2, count=3)
    assert s.overlong_parts == 0
    assert max(d for d, _, _ in parse(render(s)).segments[0].parts) == pytest.approx(PART_TARGET)
    feed.run()
    feed.add(0.221, keyframe=True)
    feed.add(0.221)
    assert s.overlong_parts == 1


def test_a_short_part_ends_its_segment_at_once() -> None:
    s, feed = stream(segment_target=2.0)
    feed.add(0.2, keyframe=True)
    feed.add(0.2, count=3)
    feed.add(0.1)  # ffmpeg cut here for the coming keyframe
    assert [seg.duration for seg in feed.done] == pytest.approx([0.9])
    assert feed.done[0].parts[-1].duration == pytest.approx(0.1)
    assert parse(render(s)).hint == part_uri(5)
    feed.add(0.2, keyframe=True)
    assert s.segments[1].parts[0].independent


def test_a_short_part_without_a_keyframe_after_it_still_ends_its_segment() -> None:
    s, feed = stream(segment_target=2.0)
    feed.add(0.2, keyframe=True)
    feed.add(0.05)
    feed.add(0.2, count=2)
    feed.add(0.2, keyframe=True)  # realigns: ends the segment that began without a keyframe
    durations = [[round(p.duration, 3) for p in seg.parts] for seg in s.segments]
    assert durations == [[0.2, 0.05], [0.2, 0.2], [0.2]]
    assert [seg.parts[0].independent for seg in s.segments] == [True, False, True]


def test_a_short_independent_part_may_stay_in_mid_segment() -> None:
    s, feed = stream(segment_target=2.0)
    feed.add(0.1, keyframe=True)
    feed.add(0.2, count=2)
    assert feed.done == []
    assert [p.duration for p in s.segments[0].parts] == pytest.approx([0.1, 0.2, 0.2])


def test_a_fragment_longer_than_the_part_target_is_counted() -> None:
    s, feed = stream()
    feed.add(0.2, keyframe=True)
    feed.add(0.25)
    assert s.overlong_parts == 1


def test_a_timestamp_jump_never_declares_a_part_above_the_part_target() -> None:
    """A jump in the publisher's timestamps (a looped file restarting) stretches a fragment a
    few milliseconds past the part target; RFC 8216bis 4.4.4.9: every EXT-X-PART DURATION is
    at most PART-TARGET, so the declared duration is capped while the segment keeps its real
    one."""
    s, feed = stream(part_target=PART_TARGET, segment_target=2.0)
    feed.add(0.2, keyframe=True)
    feed.add(0.2, count=3)
    feed.time += 0.002  # the jump: the next fragment's last sample covers it
    feed.add(0.211)
    feed.add(0.2, count=5)
    feed.add(0.2, keyframe=True)
    assert s.overlong_parts == 1, "still counted, for the output to report"
    text = render(s)
    playlist = check_conformance(text)
    first = playlist.segments[0]
    assert max(d for d, _, _ in first.parts) == pytest.approx(s.part_target)
    assert first.duration == pytest.approx(0.2 * 9 + 0.211)


def test_preload_hint_names_the_next_part_even_across_a_segment_cut() -> None:
    s, feed = stream(segment_target=1.0)
    feed.add(0.2, keyframe=True)
    feed.add(0.2, count=4)
    hint = parse(render(s)).hint
    assert hint == part_uri(5)
    feed.add(0.2, keyframe=True)  # starts segment 1
    playlist = parse(render(s))
    assert playlist.segments[1].parts[0][1] == hint
    assert playlist.segments[1].parts[0][2] is True


def test_endlist_at_the_end_and_no_hint() -> None:
    s, feed = stream()
    feed.gops(2)
    feed.add(0.2, keyframe=True)
    assert not parse(render(s)).ended
    done = s.end()
    playlist = parse(render(s))
    assert playlist.ended and playlist.hint is None
    assert [seg.msn for seg in done] == [2]
    assert playlist.segments[-1].duration == pytest.approx(0.2)


def test_parts_are_listed_for_the_last_three_segments_only() -> None:
    s, feed = stream()
    feed.gops(6)
    feed.add(0.2, keyframe=True)
    playlist = parse(render(s))
    with_parts = [seg.msn for seg in playlist.segments if seg.parts]
    assert with_parts == [3, 4, 5, 6]  # three complete and the one being filled
    assert playlist.segments[-1].uri is None


def test_window_slides_and_retired_segments_are_gone() -> None:
    s, feed = stream(window_segments=4)
    feed.gops(7)
    playlist = parse(render(s))
    assert playlist.tags["#EXT-X-MEDIA-SEQUENCE"] == "3"
    assert [seg.msn for seg in playlist.segments] == [3, 4, 5, 6]
    assert s.segment(2) is None and s.segment(5) is not None
    assert [seg.msn for seg in feed.done] == [0, 1, 2, 3, 4, 5]
    assert s.part(0) is None and s.part(s.next_part_number - 1) is not None


def test_a_new_run_with_other_codecs_gets_a_discontinuity_and_a_new_map() -> None:
    s, feed = stream(window_segments=4)
    feed.gops(2)
    feed.run(INIT)  # same init bytes: discontinuity only
    feed.gops(2)
    feed.run(OTHER_INIT)
    feed.gops(1)
    playlist = parse(render(s))
    assert [(seg.msn, seg.discontinuity, seg.map) for seg in playlist.segments] == [
        (1, False, map_uri(0)),
        (2, True, None),
        (3, False, None),
        (4, True, map_uri(1)),
    ]
    assert "#EXT-X-DISCONTINUITY-SEQUENCE" not in playlist.tags
    feed.gops(2)
    playlist = parse(render(s))
    assert playlist.tags["#EXT-X-DISCONTINUITY-SEQUENCE"] == "1"
    assert playlist.segments[0].map == map_uri(0)  # segment 3 still needs the first map
    feed.gops(1)
    assert parse(render(s)).segments[0].map == map_uri(1)
    assert set(s.maps) == {1}  # the first map left with its last segment


def test_a_segment_is_its_parts_and_decodes(h264_aac: bytes) -> None:
    s, done, init = package(h264_aac)
    assert len(done) >= 3
    for seg in done:
        assert seg.data == b"".join(p.data for p in seg.parts)
        with av.open(io.BytesIO(init.data + seg.data)) as container:
            frames = list(container.decode(video=0))
        if seg is not done[-1]:  # the last ends in a fragment of audio alone
            assert len(frames) == round(seg.duration * 30)
        assert frames[0].key_frame
    uris = [segment_uri(seg.msn) for seg in done]
    assert uris == [seg.uri for seg in parse(render(s)).segments[: len(done)]]


def test_delta_update_replaces_the_old_segments_by_skip() -> None:
    s, feed = stream(window_segments=12)
    feed.gops(11)
    feed.add(0.2, keyframe=True)
    full, delta = parse(render(s)), parse(render(s, skip=True))
    skipped = int(re.findall(r"SKIPPED-SEGMENTS=(\d+)", render(s, skip=True))[0])
    assert skipped == 5  # segments 0-4 end at least 6 s before the end (11.2 s)
    assert delta.tags["#EXT-X-MEDIA-SEQUENCE"] == full.tags["#EXT-X-MEDIA-SEQUENCE"]
    assert delta.segments[0].map == full.segments[0].map
    rest = full.segments[skipped:]
    rest[0].map = full.segments[0].map
    assert delta.segments == rest
    end = sum(seg.duration or 0 for seg in full.segments) + 0.2
    skip_until = float(attr(full.tags["#EXT-X-SERVER-CONTROL"], "CAN-SKIP-UNTIL"))
    assert all(
        end - sum(x.duration or 0 for x in full.segments[: i + 1]) >= skip_until
        for i in range(skipped)
    )
    assert end - sum(x.duration or 0 for x in full.segments[: skipped + 1]) < skip_until


def test_delta_update_of_a_short_playlist_skips_nothing() -> None:
    s, feed = stream()
    feed.gops(3)
    assert render(s, skip=True) == render(s)


LIVE = Position(next_msn=10, next_part=2, ended=False, part_target=0.2)


@pytest.mark.parametrize(
    ("query", "position", "expected"),
    [
        ({}, LIVE, Answer(skip=False)),
        ({"_HLS_skip": "YES"}, LIVE, Answer(skip=True)),
        ({"_HLS_skip": "v2"}, LIVE, Answer(skip=True)),
        ({"_HLS_skip": "NO"}, LIVE, Reject("_HLS_skip must be YES or v2, not 'NO'")),
        ({"_HLS_part": "1"}, LIVE, Reject("_HLS_part without _HLS_msn")),
        ({"_HLS_msn": "x"}, LIVE, Reject("_HLS_msn and _HLS_part must be decimal integers")),
        ({"_HLS_msn": "-1"}, LIVE, Reject("_HLS_msn and _HLS_part must be decimal integers")),
        (
            {"_HLS_msn": "9", "_HLS_part": "1e3"},
            LIVE,
            Reject("_HLS_msn and _HLS_part must be decimal integers"),
        ),
        ({"_HLS_msn": "9"}, LIVE, Answer(skip=False)),  # complete segment
        ({"_HLS_msn": "10"}, LIVE, Wait(10, None, False)),  # being filled
        ({"_HLS_msn": "10", "_HLS_part": "1"}, LIVE, Answer(skip=False)),  # part exists
        ({"_HLS_msn": "10", "_HLS_part": "2"}, LIVE, Wait(10, 2, False)),  # the hinted part
        ({"_HLS_msn": "9", "_HLS_part": "40"}, LIVE, Answer(skip=False)),  # a later one exists
        ({"_HLS_msn": "11", "_HLS_part": "0", "_HLS_skip": "YES"}, LIVE, Wait(11, 0, True)),
        ({"_HLS_msn": "12"}, LIVE, Wait(12, None, False)),  # two ahead: still waits
        (
            {"_HLS_msn": "13"},
            LIVE,
            Reject("_HLS_msn=13 is more than two segments ahead of the playlist"),
        ),
        ({"_HLS_msn": "10", "_HLS_part": "15"}, LIVE, Wait(10, 15, False)),  # 14 parts ahead
        (
            {"_HLS_msn": "10", "_HLS_part": "17"},
            LIVE,
            Reject("_HLS_part=17 is beyond the advance part limit"),
        ),
        (
            {"_HLS_msn": "11", "_HLS_part": "15"},
            LIVE,
            Reject("_HLS_part=15 is beyond the advance part limit"),
        ),
        ({"_HLS_msn": "99"}, Position(10, 2, True, 0.2), Answer(skip=False)),  # ended: at once
        (
            {"_HLS_msn": "99", "_HLS_part": "a"},
            Position(10, 2, True, 0.2),
            Reject("_HLS_msn and _HLS_part must be decimal integers"),
        ),
        (
            {"_HLS_msn": "10", "_HLS_part": "5"},
            Position(10, 2, False, 2.0),
            Reject("_HLS_part=5 is beyond the advance part limit"),
        ),
    ],
)
def test_reload_decision(query: dict[str, str], position: Position, expected: object) -> None:
    assert reload_decision(query, position) == expected


def test_a_wait_is_over_when_the_stream_reaches_it() -> None:
    s, feed = stream()
    feed.gops(1)
    decision = reload_decision({"_HLS_msn": "1", "_HLS_part": "1"}, s.position)
    assert isinstance(decision, Wait)
    feed.add(0.2, keyframe=True)
    assert not s.position.has(decision.msn, decision.part)
    feed.add(0.2)
    assert s.position.has(decision.msn, decision.part)
    assert reload_decision({"_HLS_msn": "1", "_HLS_part": "1"}, s.position) == Answer(False)


def test_a_fragment_before_the_init_segment_is_refused() -> None:
    s = LowLatencyStream(part_target=0.2, segment_target=1.0)
    with pytest.raises(ValueError, match="before the initialization segment"):
        s.add(Fragment(b"", 1, (), True, 0.2, 0.0), START)


def test_ffmpeg_plays_the_rendered_playlist(h264_aac: bytes, tmp_path: Path) -> None:
    """A real HLS client (libavformat's, through PyAV) follows the MAP and segment URIs."""
    s, _, _ = package(h264_aac)
    s.end()
    for map_id, init in s.maps.items():
        (tmp_path / map_uri(map_id)).write_bytes(init.data)
    for seg in s.segments:
        (tmp_path / segment_uri(seg.msn)).write_bytes(seg.data)
    (tmp_path / "index.m3u8").write_text(render(s))
    with av.open(str(tmp_path / "index.m3u8")) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == 4 * 30


def test_the_playlist_cache_answers_what_render_does_until_the_stream_changes() -> None:
    s, feed = stream(segment_target=1.0)
    for _ in range(12):  # 12 s of 1 s segments: a delta update skips some
        feed.add(0.2, keyframe=True)
        feed.add(0.2, count=4)
    cache = PlaylistCache(s)
    full, delta = cache.get(skip=False), cache.get(skip=True)
    assert full == render(s).encode() and delta == render(s, skip=True).encode()
    assert full != delta
    assert cache.get(skip=False) is full and cache.get(skip=True) is delta
    feed.add(0.2)  # a new part: both variants are rendered afresh
    assert cache.get(skip=False) == render(s).encode() != full
    assert cache.get(skip=True) == render(s, skip=True).encode() != delta
    s.end()
    assert cache.get(skip=False).endswith(b"#EXT-X-ENDLIST\n")
