"""Low-latency mode end to end: a stream with ``latencyMode: low`` published over real RTMP is
packaged from real ffmpeg's fragmented MP4 and served as low-latency HLS from memory at its
``downstreamUrl``: conformant playlists, blocking reloads, a preload-hinted part that waits,
players (libavformat's HLS client) that play it, audio-only and video-only, reconnects."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
from pathlib import Path

import av
import pytest

from api.keys import PATHS
from tests.e2e.conftest import (
    LiveServer,
    Publisher,
    Sources,
    fetch,
    make_source,
    push,
    wait_for_playlist,
)
from tests.fmp4_source import AAC, AUDIO, AV1, H264, HEVC, VIDEO
from tests.llhls_support import Playlist, attr, check_conformance, parse
from tests.polling import eventually
from workers.fmp4 import FragmentReader, InitSegment
from workers.llhls_output import LowLatencyOutput
from workers.supervisor import OutputState

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def long_source(ffmpeg_exe: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One long source rather than a looped one: the timestamp jump where a loop restarts
    makes a fragment longer than the part target (counted as an overlong part, and logged),
    which the conformance checks would rightly refuse."""
    directory = tmp_path_factory.mktemp("long")
    return make_source(ffmpeg_exe, directory / "av.flv", video=True, audio=True, seconds=16)


def complete_segments(text: str) -> int:
    return sum(1 for seg in parse(text).segments if seg.uri is not None)


async def start_low(
    live: LiveServer, ffmpeg: str, source: Path, publishers: list[Publisher], *, loop: bool
) -> tuple[dict, str]:
    stream = await live.create_stream(latencyMode="low")
    assert stream["latencyMode"] == "low"
    publisher = await push(ffmpeg, source, stream["upstreamUrl"], loop=loop)
    publishers.append(publisher)
    return stream, stream["downstreamUrl"]


def next_part(playlist: Playlist) -> tuple[int, int]:
    """The (msn, part) of the first part the playlist does not hold yet."""
    last = playlist.segments[-1]
    return (last.msn + 1, 0) if last.uri is not None else (last.msn, len(last.parts))


async def decode_fmp4(base: str, playlist: Playlist) -> tuple[int, int]:
    """Fetch the init segment and every complete segment; decode them: (video, audio) frames."""
    data = bytearray()
    map_uri = playlist.segments[0].map
    status, init, headers = await fetch(f"{base}/{map_uri}")
    assert status == 200 and headers["Content-Type"] == "video/mp4"
    assert "immutable" in headers["Cache-Control"]
    data += init
    for seg in playlist.segments:
        if seg.uri is None:
            continue
        assert seg.map in (None, map_uri) and not seg.discontinuity
        status, body, headers = await fetch(f"{base}/{seg.uri}")
        assert status == 200 and headers["Content-Type"] == "video/iso.segment"
        data += body
    return await asyncio.to_thread(_count_frames, bytes(data))


def _count_frames(data: bytes) -> tuple[int, int]:
    counts = {"video": 0, "audio": 0}
    with av.open(io.BytesIO(data), format="mp4") as container:
        for packet in container.demux():
            if packet.stream.type in counts and packet.size:
                counts[packet.stream.type] += len(packet.decode())
    return counts["video"], counts["audio"]


async def test_low_latency_playlist_conforms_and_its_media_decodes(
    live_server: LiveServer, ffmpeg_exe: str, publishers: list[Publisher], long_source: Path
) -> None:
    _, url = await start_low(live_server, ffmpeg_exe, long_source, publishers, loop=False)
    text = await wait_for_playlist(url, lambda t: complete_segments(t) >= 8)
    status, _, headers = await fetch(url)
    assert status == 200 and headers["Cache-Control"] == "no-cache"
    assert headers["Content-Type"] == "application/vnd.apple.mpegurl"
    playlist = check_conformance(text)
    listed = [seg for seg in playlist.segments if seg.uri is not None]
    with_parts = [seg for seg in listed[1:] if seg.parts]
    assert with_parts and all(seg.parts[0][2] for seg in with_parts), "keyframe starts"
    video, audio = await decode_fmp4(url.rsplit("/", 1)[0], playlist)
    assert video >= 30 * 6 and audio > 0
    # A delta update: the segments older than CAN-SKIP-UNTIL (6 target durations) are skipped.
    status, body, _ = await fetch(f"{url}?_HLS_skip=YES")
    delta = check_conformance(body.decode())
    skipped = int(delta.tags["#EXT-X-SKIP"].removeprefix("SKIPPED-SEGMENTS="))
    assert status == 200 and skipped >= 1
    assert delta.segments[0].msn == playlist.segments[0].msn + skipped or skipped > 1


async def test_blocking_reload_and_the_hinted_part_wait_until_they_exist(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    _, url = await start_low(live_server, ffmpeg_exe, sources.av, publishers, loop=True)
    playlist = parse(await wait_for_playlist(url, lambda t: complete_segments(t) >= 1))
    base = url.rsplit("/", 1)[0]
    msn, part = next_part(playlist)
    hint = playlist.hint
    assert hint is not None
    # Both requests are made before the part exists; each is answered once it does.
    reload = asyncio.ensure_future(fetch(f"{url}?_HLS_msn={msn}&_HLS_part={part}"))
    hinted = asyncio.ensure_future(fetch(f"{base}/{hint}"))
    status, body, _ = await reload
    assert status == 200
    after = check_conformance(body.decode())
    uris = [uri for seg in after.segments for _, uri, _ in seg.parts]
    assert hint in uris, "the blocking reload answered with the part it waited for"
    status, data, headers = await hinted
    assert status == 200 and data.startswith(b"\x00") and b"moof" in data[:16]
    assert headers["Cache-Control"] == "public, max-age=86400, immutable"
    # Too far ahead: 400 at once; a delta update skips nothing in a short playlist but parses.
    status, _, _ = await fetch(f"{url}?_HLS_msn={msn + 10}")
    assert status == 400
    status, body, _ = await fetch(f"{url}?_HLS_skip=YES")
    assert status == 200 and check_conformance(body.decode())
    status, _, _ = await fetch(f"{base}/part-{10**9}.m4s")
    assert status == 404


async def test_ffmpeg_plays_the_low_latency_downstream_url(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    _, url = await start_low(live_server, ffmpeg_exe, sources.av, publishers, loop=True)
    await wait_for_playlist(url, lambda t: complete_segments(t) >= 2)

    def play() -> tuple[int, int]:
        with av.open(url, options={"live_start_index": "0"}) as container:
            counts = {"video": 0, "audio": 0}
            for packet in container.demux():
                if packet.stream.type in counts and packet.size:
                    counts[packet.stream.type] += 1
                if counts["video"] >= 60 and counts["audio"] >= 20:
                    break
            return counts["video"], counts["audio"]

    video, audio = await asyncio.to_thread(play)
    assert video >= 60 and audio >= 20


@pytest.mark.parametrize("kind", ["audio_only", "video_only"])
async def test_audio_only_and_video_only_streams(
    live_server: LiveServer,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
    kind: str,
) -> None:
    source = getattr(sources, kind)
    _, url = await start_low(live_server, ffmpeg_exe, source, publishers, loop=True)
    playlist = check_conformance(await wait_for_playlist(url, lambda t: complete_segments(t) >= 2))
    video, audio = await decode_fmp4(url.rsplit("/", 1)[0], playlist)
    if kind == "audio_only":
        assert video == 0 and audio > 0
        parts = [ind for seg in playlist.segments for _, _, ind in seg.parts]
        assert all(parts), "audio-only parts are all independent"
    else:
        assert video >= 30 and audio == 0


async def test_a_reconnect_inside_the_window_continues_with_a_discontinuity(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    stream, url = await start_low(live_server, ffmpeg_exe, sources.av, publishers, loop=True)
    await wait_for_playlist(url, lambda t: complete_segments(t) >= 2)
    publishers[0].kill()  # a network drop: no unpublish
    await publishers[0].process.wait()
    stream_url = f"{live_server.http_url}/v1/livestreams/{stream['id']}"

    async def reconnecting() -> bool:
        _, body, _ = await fetch_with_auth(live_server, stream_url)
        return bool(body["currentSession"] and body["currentSession"]["reconnecting"])

    await eventually(reconnecting, 10, message="the drop was never noticed")
    second = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"])
    publishers.append(second)
    code, stderr = await second.finish()
    assert code == 0, stderr
    text = await wait_for_playlist(url, lambda t: parse(t).ended, timeout=20)
    playlist = check_conformance(text)
    assert "#EXT-X-MEDIA-SEQUENCE:0" in text, "one playlist: media sequence kept"
    assert [seg.discontinuity for seg in playlist.segments].count(True) == 1


async def test_a_killed_ffmpeg_is_restarted_and_the_playlist_continues_after_a_break(
    live_server: LiveServer, ffmpeg_exe: str, long_source: Path, publishers: list[Publisher]
) -> None:
    stream, url = await start_low(live_server, ffmpeg_exe, long_source, publishers, loop=False)
    await wait_for_playlist(url, lambda t: complete_segments(t) >= 2)
    output = live_server.app[PATHS].get(stream["id"]).outputs.hls  # type: ignore[union-attr]
    assert isinstance(output, LowLatencyOutput)
    process = output.supervisor.process
    assert process is not None and process.pid is not None
    os.kill(process.pid, signal.SIGKILL)

    def continued(text: str) -> bool:
        segments = parse(text).segments
        broken = [i for i, seg in enumerate(segments) if seg.discontinuity]
        return bool(broken) and sum(1 for s in segments[broken[0] :] if s.uri) >= 2

    playlist = check_conformance(await wait_for_playlist(url, continued))
    assert not playlist.ended
    index = next(i for i, seg in enumerate(playlist.segments) if seg.discontinuity)
    after = playlist.segments[index]
    assert after.parts == [] or after.parts[0][2], "the new run starts on a keyframe"
    # The same codecs give the same initialization segment, so the MAP in effect goes on
    # (a new EXT-X-MAP comes only when its bytes differ); the new run decodes with it.
    in_effect = [seg.map for seg in playlist.segments[: index + 1] if seg.map][-1]
    base = url.rsplit("/", 1)[0]
    _, init, _ = await fetch(f"{base}/{in_effect}")
    _, media, _ = await fetch(f"{base}/{after.uri}")
    video, audio = await asyncio.to_thread(_count_frames, init + media)
    assert video > 0 and audio > 0
    status = output.supervisor.status()
    assert status.restarts == 1 and status.state is OutputState.LIVE
    assert "killed by SIGKILL" in (status.last_error or "")


LIBAV_PROFILES = {
    "h264": {"Constrained Baseline": 66, "Baseline": 66, "Main": 77, "High": 100},
    "hevc": {"Main": 1, "Main 10": 2},
    "av1": {"Main": 0, "High": 1, "Professional": 2},
    "aac": {"LC": 2, "HE-AAC": 5},
}


def libav_view(context: av.codec.context.CodecContext) -> tuple[str, int, int]:
    """A track as libavcodec (ffprobe's library) describes it: codec, profile number, level
    (``-99`` when it has none: AAC)."""
    name = {"libdav1d": "av1", "libaom-av1": "av1"}.get(context.name, context.name)
    return name, LIBAV_PROFILES[name][context.profile], context.level


def codecs_view(codec: str) -> tuple[str, int, int]:
    """The same from an RFC 6381 ``CODECS`` entry (RFC 6381 3.3, ISO/IEC 14496-15 E.3, the
    AV1 ISOBMFF binding)."""
    kind, *fields = codec.split(".")
    if kind == "avc1":  # profile_idc, constraint flags, level_idc: 2 hex digits each
        return "h264", int(fields[0][:2], 16), int(fields[0][4:], 16)
    if kind == "hvc1":  # [space]profile_idc, compatibility flags, tier + level_idc, ...
        return "hevc", int(fields[0].lstrip("ABC")), int(fields[2][1:])
    if kind == "av01":  # profile, seq_level_idx + tier, bit depth
        return "av1", int(fields[0]), int(fields[1][:2])
    assert kind == "mp4a" and fields[0] == "40", codec  # MPEG-4 audio, audio object type
    return "aac", int(fields[1]), -99


@pytest.mark.parametrize(
    ("codec", "fourcc", "decoders"),
    [
        (H264, "avc1", ("h264",)),
        (HEVC, "hvc1", ("hevc",)),
        (AV1, "av01", ("av1", "libdav1d", "libaom-av1")),
    ],
)
async def test_codecs_come_out_as_real_mp4_tracks_with_their_codecs_listed(
    live_server: LiveServer,
    ffmpeg_exe: str,
    publishers: list[Publisher],
    tmp_path: Path,
    codec: list[str],
    fourcc: str,
    decoders: tuple[str, ...],
) -> None:
    """H.264, and HEVC and AV1 over enhanced RTMP, with AAC: the tracks players expect, and a
    multivariant playlist whose ``CODECS`` say what libavcodec finds in the media."""
    source = tmp_path / "source.flv"
    encode = [ffmpeg_exe, "-hide_banner", "-loglevel", "error", "-y", *VIDEO, *AUDIO, "-t", "5"]
    await asyncio.to_thread(
        subprocess.run, [*encode, *codec, *AAC, "-f", "flv", str(source)], check=True, timeout=120
    )
    _, url = await start_low(live_server, ffmpeg_exe, source, publishers, loop=True)
    playlist = check_conformance(await wait_for_playlist(url, lambda t: complete_segments(t) >= 1))
    base = url.rsplit("/", 1)[0]
    _, init, _ = await fetch(f"{base}/{playlist.segments[0].map}")
    (event,) = FragmentReader().feed(init)
    assert isinstance(event, InitSegment) and event.codecs.startswith(f"{fourcc}."), event.codecs
    _, segment, _ = await fetch(f"{base}/{playlist.segments[0].uri}")
    (tmp_path / "media.mp4").write_bytes(init + segment)
    status, body, headers = await fetch(f"{base}/multivariant.m3u8")
    assert status == 200 and headers["Content-Type"] == "application/vnd.apple.mpegurl"
    *_, inf, uri = body.decode().splitlines()
    assert inf.startswith("#EXT-X-STREAM-INF:")
    assert uri == "index.m3u8" and attr(inf, "RESOLUTION") == "320x240"
    listed = attr(inf, "CODECS").split(",")
    with av.open(str(tmp_path / "media.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name in decoders
        assert stream.codec_tag == fourcc
        assert sum(1 for _ in container.decode(video=0)) > 0
        seen = [libav_view(s.codec_context) for s in container.streams]
    assert sorted(codecs_view(c) for c in listed) == sorted(seen), (listed, seen)


async def fetch_with_auth(live: LiveServer, url: str) -> tuple[int, dict, dict[str, str]]:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(url, headers=live.headers) as response:
        return response.status, await response.json(), dict(response.headers)


def media_uris(playlist: Playlist) -> set[str]:
    uris = {uri for _, uri, _ in (p for seg in playlist.segments for p in seg.parts)}
    uris |= {seg.uri for seg in playlist.segments if seg.uri is not None}
    return uris | {seg.map for seg in playlist.segments if seg.map is not None}


async def test_a_new_session_never_reuses_a_media_name_of_an_earlier_one(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    """Parts and segments are served immutable, so browsers and CDNs keep them by name: a later
    session of the stream must not give out a name an earlier session's media had."""
    stream = await live_server.create_stream(latencyMode="low", reconnectWindowSeconds=0)
    url = stream["downstreamUrl"]
    first = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True)
    publishers.append(first)
    earlier = media_uris(parse(await wait_for_playlist(url, lambda t: complete_segments(t) >= 1)))
    first.kill()  # no reconnect window: the session ends
    await first.process.wait()
    await wait_for_playlist(url, lambda t: parse(t).ended, timeout=20)

    second = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True)
    publishers.append(second)
    text = await wait_for_playlist(
        url, lambda t: not parse(t).ended and complete_segments(t) >= 1, timeout=30
    )
    assert not media_uris(parse(text)) & earlier
    base = url.rsplit("/", 1)[0]
    for uri in sorted(earlier)[:3]:
        status, _, _ = await fetch(f"{base}/{uri}")
        assert status == 404, uri


async def test_a_stream_nobody_watched_serves_its_ended_playlist_after_it_ends(
    live_server: LiveServer, ffmpeg_exe: str, sources: Sources, publishers: list[Publisher]
) -> None:
    """As standard mode's files do, an ended low-latency stream's last window stays playable
    (with ``EXT-X-ENDLIST``) for a while, also when no viewer asked for it while it was live."""
    stream = await live_server.create_stream(latencyMode="low", reconnectWindowSeconds=0)
    publisher = await push(ffmpeg_exe, sources.av, stream["upstreamUrl"], loop=True)
    publishers.append(publisher)

    def output() -> LowLatencyOutput | None:
        path = live_server.app[PATHS].get(stream["id"])
        found = path.outputs.hls if path is not None else None
        return found if isinstance(found, LowLatencyOutput) else None

    def has_a_segment() -> bool:
        found = output()
        return found is not None and any(s.complete for s in found.stream.segments)

    await eventually(has_a_segment, 30)  # live, without a playback request
    publisher.kill()  # no reconnect window: the session ends
    await publisher.process.wait()
    await eventually(lambda: live_server.app[PATHS].get(stream["id"]) is None, 20)
    text = await wait_for_playlist(stream["downstreamUrl"], lambda t: parse(t).ended, timeout=5)
    assert complete_segments(text) >= 1
