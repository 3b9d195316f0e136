"""The restream target URL policy (pure function; no database)."""

from __future__ import annotations

import pytest

from api.targets import restream_url_problem


@pytest.mark.parametrize(
    "url",
    [
        "rtmp://x.rtmp.youtube.com/live2",
        "rtmps://live-api-s.facebook.com:443/rtmp/",
        "RTMP://a.example.com/app",
        "rtmp://8.8.8.8/live",
        "rtmp://[2001:4860:4860::8888]:1935/live",
        "rtmp://user:pass@a.example.com/live",
    ],
)
def test_public_rtmp_urls_are_allowed(url: str) -> None:
    assert restream_url_problem(url, allow_private=False) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://a.example.com/x", "url must start with rtmp:// or rtmps://"),
        ("rtmpx://a.example.com/x", "url must start with rtmp:// or rtmps://"),
        ("a.example.com/live", "url must start with rtmp:// or rtmps://"),
        ("file:///etc/passwd", "url must start with rtmp:// or rtmps://"),
        ("rtmp:///live", "url must have a host"),
        ("rtmp://:1935/live", "url must have a host"),
        ("rtmp://a.example.com:99999/live", "url is not a valid URL"),
        ("rtmp://a.example.com:port/live", "url is not a valid URL"),
        ("rtmp://[::1/live", "url is not a valid URL"),
        ("rtmp://a.example.com/live key", "url must not contain whitespace or control characters"),
        ("rtmp://a.example.com/\nlive", "url must not contain whitespace or control characters"),
    ],
)
def test_malformed_urls_are_refused(url: str, problem: str) -> None:
    assert restream_url_problem(url, allow_private=True) == problem


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f000001",
        "localhost",
        "LOCALHOST.",
        "api.localhost",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.0.10",
        "100.64.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "224.0.0.1",
        "[::1]",
        "[::]",
        "[fe80::1]",
        "[fd00::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:10.0.0.1]",
    ],
)
def test_private_hosts_are_refused_unless_allowed(host: str) -> None:
    url = f"rtmp://{host}:1935/live"
    problem = restream_url_problem(url, allow_private=False)
    assert problem is not None and "private" in problem
    assert restream_url_problem(url, allow_private=True) is None
