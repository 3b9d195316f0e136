"""Reading an adaptive-bitrate stream in tests: the multivariant playlist's variants, the
codec string of the H.264 in MPEG-TS segments, and ffmpeg reading every variant."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from tests.e2e.conftest import fetch

_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


@dataclass(frozen=True)
class ListedVariant:
    uri: str
    attributes: dict[str, str]


def parse_multivariant(text: str) -> list[ListedVariant]:
    """The ``EXT-X-STREAM-INF`` entries of ``text`` with their URIs (RFC 8216 4.3.4.2)."""
    variants: list[ListedVariant] = []
    attributes: dict[str, str] | None = None
    for line in text.splitlines():
        if line.startswith("#EXT-X-STREAM-INF:"):
            found = _ATTRIBUTE.findall(line.partition(":")[2])
            attributes = {k: v.strip('"') for k, v in found}
        elif line and not line.startswith("#") and attributes is not None:
            variants.append(ListedVariant(line, attributes))
            attributes = None
    return variants


def avc_codec_string(ts: bytes) -> str:
    """``avc1.PPCCLL`` of the first H.264 sequence parameter set in MPEG-TS bytes (the three
    bytes after the SPS NAL header; TS packet headers are not in the way of a 3-byte read
    often enough to matter, and the test would fail loudly if they were)."""
    at = ts.find(b"\x00\x00\x01\x67")
    assert at >= 0, "no H.264 sequence parameter set in the segment"
    profile, compat, level = ts[at + 4 : at + 7]
    return f"avc1.{profile:02X}{compat:02X}{level:02X}"


async def fetch_ok(url: str) -> bytes:
    status, body, _ = await fetch(url)
    assert status == 200, f"{url}: HTTP {status}"
    return body


async def ffmpeg_reads_every_variant(ffmpeg: str, url: str) -> str:
    """ffmpeg's report on reading the whole multivariant ``url`` (every variant, to the end);
    fails unless it exits 0."""
    process = await asyncio.create_subprocess_exec(
        ffmpeg, "-hide_banner", "-nostdin", "-i", url, "-map", "0", "-f", "null", "-",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 120)
    report = stderr.decode(errors="replace")
    assert process.returncode == 0, report
    return report
