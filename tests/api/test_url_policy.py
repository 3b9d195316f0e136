"""The outbound URL policy of restream targets and webhooks (pure functions; no database)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.url_policy import UrlRefused, checked_url, restream_url_problem, webhook_url_problem
from tests.conftest import HOSTILE_HOSTS
from workers.egress import connect_host, is_private_host


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


@pytest.mark.parametrize("host", HOSTILE_HOSTS)
@pytest.mark.parametrize("scheme", ["rtmp", "rtmps", "http", "https", "RTMP", "HTTP"])
def test_hostile_spellings_of_private_hosts_are_refused(scheme: str, host: str) -> None:
    url = f"{scheme}://{host}:1935/app"
    problem = (
        restream_url_problem(url, allow_private=False)
        if scheme.lower().startswith("rtmp")
        else webhook_url_problem(url, allow_private=False)
    )
    assert problem is not None and "private" in problem, problem


@pytest.mark.parametrize(
    "host",
    [
        "[64:ff9b::808:808]",
        "[2002:808:808::1]",
        "[::ffff:8.8.8.8]",
        "\uff18.\uff18.\uff18.\uff18",
        "xn--bcher-kva.ch",
    ],
)
def test_public_addresses_in_embedded_spellings_are_allowed(host: str) -> None:
    assert webhook_url_problem(f"https://{host}/hook", allow_private=False) is None


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("RTMP://a.example.com/app", "rtmp://a.example.com/app"),
        ("RTMPS://A.Example.COM:443/App/X?y=Z", "rtmps://a.example.com:443/App/X?y=Z"),
        ("Http://user:PW@Ex\u00e4mple.com./Hook", "http://user:PW@xn--exmple-cua.com./Hook"),
        ("rtmp://\uff18.\uff18.\uff18.\uff18/live", "rtmp://8.8.8.8/live"),
        ("rtmp://[2001:4860:4860:0::8888]:1935/a", "rtmp://[2001:4860:4860::8888]:1935/a"),
        (
            "rtmp://127\u30020\u30020\u30021/live",
            "rtmp://127.0.0.1/live",
        ),  # when private targets are allowed
    ],
)
def test_urls_are_stored_as_the_client_will_read_them(url: str, stored: str) -> None:
    schemes = ("rtmp", "rtmps", "http")
    assert checked_url(url, schemes=schemes, allow_private=True) == stored


@settings(max_examples=500, deadline=None)
@given(
    scheme=st.sampled_from(["rtmp", "RTMPS", "http", "HtTpS"]),
    authority=st.text(max_size=40),
    rest=st.sampled_from(["", "/", "/app", "/a?b#c"]),
)
def test_any_url_is_refused_or_stored_in_a_form_the_policy_accepts(
    scheme: str, authority: str, rest: str
) -> None:
    """Garbage in: a normalised URL whose host passes the policy, or UrlRefused, nothing else."""
    schemes = ("rtmp", "rtmps", "http", "https")
    try:
        stored = checked_url(f"{scheme}://{authority}{rest}", schemes=schemes, allow_private=False)
    except UrlRefused:
        return
    assert stored.startswith(scheme.lower() + "://")
    assert checked_url(stored, schemes=schemes, allow_private=False) == stored
    assert not is_private_host(connect_host(stored))
