"""Secrets are redacted by value, whatever the shape of the URL around them: the restream
key, URL passwords and query strings never reach a log line, ``lastError`` or a stderr tail."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from config import Settings
from ingest.authorizer import RestreamTarget
from ingest.hub import StreamHub
from tests.conftest import assert_hidden
from tests.fakes import FakeResolver
from workers.argv import REDACTED, format_argv, make_redactor, restream_argv
from workers.restream import RestreamOutput

FF = "/opt/ffmpeg"

HOSTILE_KEYS = (
    "ONLYKEY-5d1e7a",
    "a/b/c-9f2e41",
    "ke#y-77a1b0",
    "k?ey=1&x-2b9c3d",
    "pct%41%2Fk-3c7d",
    "sp ace key-4d8e",
    "ключ-ñé-日本-5e0f",
    "quo'te\"key-6f1a",
    "a" * 40 + "/" + "b" * 40,
)
"""Stream keys with every character that URL parsers, shells or encoders treat specially."""

BASES = (
    "rtmp://x.example.com",
    "rtmp://x.example.com:1935/live2",
    "rtmps://user:pw-9Qz@x.example.com:443/app/instance",
)
"""Target URLs without an application path, with one, and with credentials and two segments."""


def restream_output(url: str, key: str, tmp_path: Path) -> RestreamOutput:
    hub = StreamHub("e" * 24, queue_bytes=100_000)
    target = RestreamTarget("t9", f"{url}/{key}", stream_key=key)
    return RestreamOutput(
        Settings(data_dir=tmp_path), ffmpeg=FF, hub=hub, target=target, resolve=FakeResolver()
    )


def lower_hex(text: str) -> str:
    """``text`` with its percent-escapes in lower case (``%2f``), as some encoders write them."""
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def ffmpeg_says(url: str) -> list[str]:
    """What ffmpeg prints about an output URL, as it was given and percent-encoded."""
    return [
        f"[out#0/flv @ 0x55d07f182d80] Error opening output {url}: Connection refused",
        f"Error opening output file {url}.",
        f"[rtmp @ 0x1] Server error: {quote(url, safe=':/@')}",
        f"[rtmp @ 0x1] playpath {lower_hex(quote(url, safe=''))}",
        f"[rtmp @ 0x1] playpath {quote_plus(url)}",
    ]


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("key", HOSTILE_KEYS)
async def test_restream_key_is_hidden_everywhere(base: str, key: str, tmp_path: Path) -> None:
    relay = restream_output(base, key, tmp_path)
    url = relay.target.publish_url
    # The argv as started: the checked address, and the name (perhaps with the key's first
    # segment as the application) in -rtmp_tcurl.
    started = format_argv(relay._argv(await relay.plan()), relay.supervisor._redact)
    assert_hidden(key, started)
    assert started.startswith(f"{FF} -hide_banner") and REDACTED in started
    for line in ffmpeg_says(url):
        assert_hidden(key, relay.supervisor._short(line))
    assert "pw-9Qz" not in started


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_a_line_cut_inside_the_key_hides_its_start(key: str) -> None:
    """ffmpeg lines are cut at a length limit: the cut may fall inside the key."""
    redactor = make_redactor([key])
    line = f"{'x' * 100} Error opening output rtmp://x.example.com/{key}: refused"
    cut = line[: line.index(key) + len(key) // 2 + 1]
    assert_hidden(key, redactor(cut))
    assert redactor(cut).startswith("x" * 100)


def test_shell_quoting_does_not_split_the_key() -> None:
    key = "it's-a-key-8c1d"
    line = format_argv(
        restream_argv(FF, publish_url=f"rtmp://h.example.com/{key}"), make_redactor([key])
    )
    assert_hidden(key, line)
    assert line.endswith("'rtmp://h.example.com/***'")


def test_plain_text_stays_readable() -> None:
    redactor = make_redactor(["ONLYKEY-5d1e7a"])
    text = "[tcp @ 0x1] Connection to tcp://127.0.0.1:1?tcp_nodelay=0 failed: Connection refused"
    assert redactor(text) == text
    assert redactor("ends with ONLY") == "ends with ONLY"  # too short to be the key's start


def test_the_parts_ffmpeg_splits_a_key_into_are_hidden() -> None:
    """With no application path in the target URL, ffmpeg takes the key's first segment(s) as
    the RTMP application (it shows in a tcUrl) and the rest as the playpath."""
    key = "studio-7f3a9c/b2e4d6f8a0"
    redactor = make_redactor([key])
    for text in (
        "-rtmp_tcurl rtmp://x.example.com:1935/studio-7f3a9c",
        "[rtmp @ 0x1] playpath b2e4d6f8a0 not found",
    ):
        assert REDACTED in redactor(text)
        assert "studio-7f3a9c" not in redactor(text) and "b2e4d6f8a0" not in redactor(text)
    assert redactor("a/b segment") == "a/b segment"
    short = make_redactor(["live/x"])  # pieces this short are not worth hiding everywhere
    assert short("live stream e1/restream:t9") == "live stream e1/restream:t9"
