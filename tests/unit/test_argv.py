"""The ffmpeg argv builders, checked as lists, and redaction of secrets."""

from __future__ import annotations

import itertools

import pytest

from workers.argv import (
    format_argv,
    hls_argv,
    input_argv,
    llhls_argv,
    make_redactor,
    redact,
    restream_argv,
    url_secrets,
)

FF = "/opt/ffmpeg"


def _pairs(argv: list[str]) -> dict[str, str]:
    """Option -> value for ``-opt value`` pairs (last one wins)."""
    return {a: b for a, b in itertools.pairwise(argv) if a.startswith("-")}


def test_input_part_reads_flv_from_stdin_and_copies() -> None:
    argv = input_argv(FF)
    assert argv == [
        FF,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "warning",
        "-nostats",
        "-progress",
        "pipe:1",
        "-stats_period",
        "1",
        "-probesize",
        "500000",
        "-analyzeduration",
        "1000000",
        "-f",
        "flv",
        "-i",
        "pipe:0",
        "-map",
        "0:v?",
        "-map",
        "0:a?",
        "-c",
        "copy",
    ]
    assert "-fflags" not in argv  # +nobuffer would drop the probed first GOP


def test_input_part_parameters() -> None:
    pairs = _pairs(input_argv(FF, loglevel="error", probesize=32_768, analyzeduration=0.5))
    assert pairs["-loglevel"] == "error"
    assert pairs["-probesize"] == "32768"
    assert pairs["-analyzeduration"] == "500000"


def test_hls_argv() -> None:
    argv = hls_argv(
        FF,
        segment_seconds=2.0,
        segment_pattern="/data/live/abc/seg%06d.ts",
        playlist_path="/data/live/abc/ffmpeg.m3u8",
        start_number=42,
    )
    assert argv[: len(input_argv(FF))] == input_argv(FF)
    assert argv[len(input_argv(FF)) :] == [
        "-f",
        "hls",
        "-hls_time",
        "2",
        "-hls_list_size",
        "10",
        "-hls_segment_type",
        "mpegts",
        "-hls_flags",
        "independent_segments+temp_file",
        "-start_number",
        "42",
        "-hls_segment_filename",
        "/data/live/abc/seg%06d.ts",
        "/data/live/abc/ffmpeg.m3u8",
    ]
    assert "delete_segments" not in " ".join(argv)  # liverelay owns deletion


def test_hls_argv_fractional_segment_and_loglevel() -> None:
    pairs = _pairs(
        hls_argv(
            FF,
            segment_seconds=1.5,
            segment_pattern="s%d.ts",
            playlist_path="p.m3u8",
            loglevel="info",
            list_size=4,
        )
    )
    assert pairs["-hls_time"] == "1.5"
    assert pairs["-loglevel"] == "info"
    assert pairs["-hls_list_size"] == "4"
    assert pairs["-start_number"] == "0"


def test_hls_argv_needs_a_counter_in_the_pattern() -> None:
    with pytest.raises(ValueError, match="has no %d counter"):
        hls_argv(FF, segment_seconds=2, segment_pattern="seg.ts", playlist_path="p.m3u8")


def test_llhls_argv_writes_fragmented_mp4_to_stdout_without_progress() -> None:
    argv = llhls_argv(FF)
    assert "-progress" not in argv, "stdout is the media"
    pairs = _pairs(argv)
    assert pairs["-probesize"] == "32768"
    assert (pairs["-f"], pairs["-movflags"]) == (
        "mp4",
        "+frag_keyframe+empty_moov+default_base_moof",
    )
    assert pairs["-frag_duration"] == "200000"
    assert argv[-1] == "pipe:1" and "-tag:v" not in argv
    assert argv[argv.index("-i") + 1] == "pipe:0" and pairs["-c"] == "copy"
    assert _pairs(llhls_argv(FF, audio_only=True))["-frag_duration"] == "190000"
    hevc = llhls_argv(FF, hevc=True)
    assert _pairs(hevc)["-tag:v"] == "hvc1"
    assert hevc.index("-tag:v") > hevc.index("-c")


def test_restream_argv_rtmp() -> None:
    url = "rtmp://live.example.com/app/KEY123"
    argv = restream_argv(FF, publish_url=url, rw_timeout_seconds=5)
    assert argv[len(input_argv(FF)) :] == [
        "-f",
        "flv",
        "-flvflags",
        "no_duration_filesize",
        "-rw_timeout",
        "5000000",
        url,
    ]
    assert "-tls_verify" not in argv
    assert "-timeout" not in argv  # rtmp's -timeout means "listen"


def test_restream_argv_rtmps_verifies_tls() -> None:
    url = "rtmps://live.example.com:443/app/KEY123"
    argv = restream_argv(FF, publish_url=url, ca_file="/etc/ca.pem")
    tail = argv[len(input_argv(FF)) :]
    assert tail[-5:] == ["-tls_verify", "1", "-ca_file", "/etc/ca.pem", url]
    assert _pairs(argv)["-rw_timeout"] == "10000000"
    assert "-ca_file" not in restream_argv(FF, publish_url=url)
    assert _pairs(restream_argv(FF, publish_url=url))["-tls_verify"] == "1"


@pytest.mark.parametrize("url", ["http://example.com/x", "srt://example.com:9000", "file:///tmp/x"])
def test_restream_argv_rejects_other_schemes(url: str) -> None:
    with pytest.raises(ValueError, match="must be rtmp:// or rtmps://"):
        restream_argv(FF, publish_url=url)


def test_restream_ca_file_only_for_rtmps() -> None:
    with pytest.raises(ValueError, match="only applies to rtmps://"):
        restream_argv(FF, publish_url="rtmp://h/app/k", ca_file="/ca.pem")


@pytest.mark.parametrize("scheme", ["RTMP", "Rtmp", "RTMPS"])
def test_restream_argv_hands_ffmpeg_a_lower_case_scheme(scheme: str) -> None:
    # ffmpeg's protocol names are case-sensitive: "RTMP://" is "Protocol not found".
    argv = restream_argv(FF, publish_url=f"{scheme}://Live.example.com/App/KEY")
    assert argv[-1] == f"{scheme.lower()}://Live.example.com/App/KEY"


def test_restream_argv_sends_the_given_tc_url() -> None:
    argv = restream_argv(
        FF, publish_url="rtmp://192.0.2.7:1935/app/KEY", tc_url="rtmp://live.example.com:1935/app"
    )
    assert argv[-3:] == ["-rtmp_tcurl", "rtmp://live.example.com:1935/app", argv[-1]]


# -- redaction --------------------------------------------------------------------------------


def test_redact_secrets_and_url_credentials() -> None:
    text = "Error opening output rtmp://bob:s3cr3t@host:1935/app/KEY123: refused"
    assert redact(text, ["KEY123"]) == "Error opening output rtmp://***@host:1935/app/***: refused"


def test_redact_password_containing_at_sign() -> None:
    assert redact("rtmps://u:p@ss@host/app", []) == "rtmps://***@host/app"


def test_redact_percent_encoded_secret_and_longest_first() -> None:
    assert redact("k=a%2Fb", ["a/b"]) == "k=***"
    assert redact("abcdef abc", ["abc", "abcdef"]) == "*** ***"


def test_redact_leaves_plain_text_and_ignores_empty_secrets() -> None:
    text = "[tcp @ 0x1] Connection to tcp://127.0.0.1:1?tcp_nodelay=0 failed: user@example"
    assert redact(text, ["", "nothing-here"]) == text


def test_url_secrets() -> None:
    assert url_secrets("rtmp://a.rtmp.youtube.com/live2/abcd-efgh") == ["abcd-efgh"]
    assert url_secrets("rtmps://u:pw@host/app/KEY?token=T") == ["pw", "KEY", "token=T"]
    assert url_secrets("rtmp://host/app") == []


def test_logged_argv_never_shows_the_key() -> None:
    url = "rtmps://user:pw@live.example.com/app/KEY-0123"
    redactor = make_redactor(url_secrets(url))
    line = format_argv(restream_argv(FF, publish_url=url), redactor)
    assert "KEY-0123" not in line
    assert "pw" not in line
    assert line.endswith("'rtmps://***@live.example.com/app/***'")
    assert line.startswith(f"{FF} -hide_banner -nostdin")
