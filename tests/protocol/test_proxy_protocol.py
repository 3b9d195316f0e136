"""The PROXY protocol header reader at byte level: every header fed whole, one byte at a time and
followed by RTMP bytes; truncated and malformed headers; garbage in gives a header, "need more"
or ProxyProtocolError, nothing else."""

from __future__ import annotations

import random
import struct

import pytest

from ingest.proxy_protocol import (
    V1_MAX_SIZE,
    ProxyHeader,
    ProxyHeaderReader,
    ProxyProtocolError,
    parse_proxy_header,
    starts_like_proxy_header,
)

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
C0C1_START = b"\x03" + bytes(8)
"""What an RTMP client sends first (C0 and the start of C1)."""


def v2(command: int, family: int, block: bytes) -> bytes:
    """A version 2 header: ``command`` (0 LOCAL, 1 PROXY), family/transport byte, block."""
    return SIG + bytes([0x20 | command, family]) + struct.pack("!H", len(block)) + block


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


V4_BLOCK = bytes([192, 0, 2, 1, 198, 51, 100, 7]) + struct.pack("!HH", 56324, 1935)
V6_BLOCK = (
    bytes.fromhex("20010db8000000010000000000000042")
    + bytes.fromhex("20010db8000000020000000000000001")
    + struct.pack("!HH", 40000, 1935)
)

VALID = {
    "v1 tcp4": (
        b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 1935\r\n",
        ProxyHeader(1, "proxy", ("192.0.2.1", 56324), ("198.51.100.7", 1935), size=46),
    ),
    "v1 tcp6": (
        b"PROXY TCP6 2001:db8:1::42 2001:db8:2::1 40000 1935\r\n",
        ProxyHeader(1, "proxy", ("2001:db8:1::42", 40000), ("2001:db8:2::1", 1935), size=52),
    ),
    "v1 unknown": (b"PROXY UNKNOWN\r\n", ProxyHeader(1, "proxy", None, None, size=15)),
    "v1 unknown with addresses": (
        b"PROXY UNKNOWN ffff:f...f:ffff 0 0 whatever\r\n",
        ProxyHeader(1, "proxy", None, None, size=44),
    ),
    "v1 longest tcp6": (
        b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        b":ffff 65535 65535\r\n",
        ProxyHeader(
            1,
            "proxy",
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
            size=104,
        ),
    ),
    "v1 longest": (  # 2.1: the 107-byte worst case
        b"PROXY UNKNOWN " + b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff " * 2 + b"65535 65535\r\n",
        ProxyHeader(1, "proxy", None, None, size=V1_MAX_SIZE),
    ),
    "v2 proxy ipv4": (
        v2(1, 0x11, V4_BLOCK),
        ProxyHeader(2, "proxy", ("192.0.2.1", 56324), ("198.51.100.7", 1935), size=28),
    ),
    "v2 proxy ipv6": (
        v2(1, 0x21, V6_BLOCK),
        ProxyHeader(2, "proxy", ("2001:db8:0:1::42", 40000), ("2001:db8:0:2::1", 1935), size=52),
    ),
    "v2 proxy ipv4 with tlvs": (
        v2(1, 0x11, V4_BLOCK + tlv(0x05, b"id-1") + tlv(0x04, b"") + tlv(0xEA, b"\x01vpce-1")),
        ProxyHeader(
            2,
            "proxy",
            ("192.0.2.1", 56324),
            ("198.51.100.7", 1935),
            ((0x05, b"id-1"), (0x04, b""), (0xEA, b"\x01vpce-1")),
            size=28 + 7 + 3 + 10,
        ),
    ),
    "v2 local": (v2(0, 0x00, b""), ProxyHeader(2, "local", None, None, size=16)),
    "v2 local ignores its block": (
        v2(0, 0x11, V4_BLOCK + b"\xff"),
        ProxyHeader(2, "local", None, None, size=29),
    ),
    "v2 proxy unspec": (v2(1, 0x00, b"\x01\x02"), ProxyHeader(2, "proxy", None, None, size=18)),
    "v2 proxy unix": (
        v2(1, 0x31, b"/run/a".ljust(108, b"\0") + b"/run/b".ljust(108, b"\0") + tlv(1, b"h2")),
        ProxyHeader(2, "proxy", None, None, ((1, b"h2"),), size=16 + 216 + 5),
    ),
}


@pytest.mark.parametrize("name", VALID)
def test_a_header_fed_whole(name: str) -> None:
    data, expected = VALID[name]
    assert parse_proxy_header(data) == expected
    reader = ProxyHeaderReader()
    assert reader.receive_data(data) == expected
    assert reader.rest == b""


@pytest.mark.parametrize("name", VALID)
def test_a_header_fed_one_byte_at_a_time(name: str) -> None:
    data, expected = VALID[name]
    reader = ProxyHeaderReader()
    for index in range(len(data) - 1):
        assert reader.receive_data(data[index : index + 1]) is None
    assert reader.receive_data(data[-1:]) == expected


@pytest.mark.parametrize("name", VALID)
def test_the_bytes_after_the_header_are_kept_untouched(name: str) -> None:
    data, expected = VALID[name]
    reader = ProxyHeaderReader()
    assert reader.receive_data(data + C0C1_START + b"\r\n") == expected
    assert reader.rest == C0C1_START + b"\r\n"


def test_the_reader_reads_one_header_only() -> None:
    data, _ = VALID["v1 unknown"]
    reader = ProxyHeaderReader()
    assert reader.receive_data(data) is not None
    with pytest.raises(ProxyProtocolError, match="already read"):
        reader.receive_data(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (C0C1_START, r"no PROXY protocol header: the connection begins with b'\\x03"),
        (b"GET / HTTP/1.1\r\n", "no PROXY protocol header"),
        (b"PROXX ", "no PROXY protocol header"),
        (b"\r\n\r\n\x00\r\nQUIX", "no PROXY protocol header"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.7 1 2\n", "ends without CRLF"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.7 1 2\r\r\n", "invalid port '2\\\\r'"),
        (b"PROXY TCP5 192.0.2.1 198.51.100.7 1 2\r\n", "unknown protocol 'TCP5'"),
        (b"PROXY  TCP4 192.0.2.1 198.51.100.7 1 2\r\n", "unknown protocol ''"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.7 1\r\n", "needs 4 fields, not 3"),
        (b"PROXY TCP4 192.0.2.1  198.51.100.7 1 2\r\n", "needs 4 fields, not 5"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.7 1 2 \r\n", "needs 4 fields, not 5"),
        (b"PROXY TCP4 2001:db8::1 198.51.100.7 1 2\r\n", "invalid IPv4 address '2001:db8::1'"),
        (b"PROXY TCP4 192.0.2.01 198.51.100.7 1 2\r\n", "invalid IPv4 address '192.0.2.01'"),
        (b"PROXY TCP6 192.0.2.1 2001:db8::1 1 2\r\n", "invalid IPv6 address '192.0.2.1'"),
        (b"PROXY TCP6 fe80::1%eth0 2001:db8::1 1 2\r\n", "invalid IPv6 address 'fe80::1%eth0'"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.7 65536 2\r\n", "invalid port '65536'"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.7 +80 2\r\n", "invalid port '\\+80'"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.7 080 2\r\n", "invalid port '080'"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.7 1_0 2\r\n", "invalid port '1_0'"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.7 1 2\xff\r\n", "not ASCII"),
        (b"PROXY UNKNOWN " + b"x" * 100, "no CRLF in its first 107 bytes"),
        (SIG + b"\x11\x11\x00\x0c" + V4_BLOCK, "version 1, not 2"),
        (SIG + b"\x22\x11\x00\x0c" + V4_BLOCK, "unknown command 0x2"),
        (v2(1, 0x41, V4_BLOCK), "unknown family 0x41"),
        (v2(1, 0x13, V4_BLOCK), "unknown family 0x13"),
        (v2(1, 0x11, V4_BLOCK[:11]), "address block of 11 bytes is shorter than 12 bytes"),
        (v2(1, 0x21, V4_BLOCK), "address block of 12 bytes is shorter than 36 bytes"),
        (v2(1, 0x11, V4_BLOCK + b"\x05\x00"), "truncated TLV"),
        (v2(1, 0x11, V4_BLOCK + b"\x05\x00\x05abcd"), "TLV 0x05 overruns the header"),
        (SIG + b"\x21\x11\x10\x00", "header of 4112 bytes exceeds 4096 bytes"),
    ],
)
def test_malformed_headers_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(ProxyProtocolError, match=message):
        parse_proxy_header(data + C0C1_START)


def test_a_missing_header_is_told_from_a_broken_one() -> None:
    with pytest.raises(ProxyProtocolError) as missing:
        parse_proxy_header(C0C1_START)
    assert missing.value.missing
    with pytest.raises(ProxyProtocolError) as broken:
        parse_proxy_header(b"PROXY TCP9\r\n")
    assert not broken.value.missing


@pytest.mark.parametrize("name", VALID)
def test_every_truncated_header_needs_more(name: str) -> None:
    data, _ = VALID[name]
    for size in range(len(data)):
        assert parse_proxy_header(data[:size]) is None


def test_a_v1_header_is_not_waited_for_past_107_bytes() -> None:
    reader = ProxyHeaderReader()
    assert reader.receive_data(b"PROXY UNKNOWN " + b"x" * 92) is None  # 106 bytes
    with pytest.raises(ProxyProtocolError, match="no CRLF in its first 107 bytes"):
        reader.receive_data(b"x")


def test_the_v2_bound_is_checked_from_the_fixed_part_alone() -> None:
    reader = ProxyHeaderReader(max_v2_size=100)
    with pytest.raises(ProxyProtocolError, match="header of 101 bytes exceeds 100 bytes"):
        reader.receive_data(SIG + b"\x21\x11\x00\x55")  # no address byte sent yet
    assert ProxyHeaderReader(max_v2_size=100).receive_data(SIG + b"\x21\x11\x00\x54") is None
    with pytest.raises(ValueError, match="at least 52 bytes"):
        ProxyHeaderReader(max_v2_size=51)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"P", True),
        (b"PROXY TCP4", True),
        (b"\r", True),
        (SIG + b"\x21", True),
        (b"\x03", False),
        (b"PX", False),
        (b"\r\n\r\n\x01", False),
        (b"", False),
    ],
)
def test_what_starts_like_a_header(data: bytes, expected: bool) -> None:
    assert starts_like_proxy_header(data) is expected


def test_garbage_gives_a_header_need_more_or_the_one_error() -> None:
    """Random mutations of valid headers, fed in random pieces: nothing but a header,
    ``None`` or ProxyProtocolError comes out, and a header never claims more bytes than it
    was given."""
    rng = random.Random(1935)
    seeds = [data for data, _ in VALID.values()]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds) + C0C1_START)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        reader = ProxyHeaderReader(max_v2_size=512)
        offset = 0
        try:
            while offset < len(data):
                step = rng.randint(1, 40)
                header = reader.receive_data(bytes(data[offset : offset + step]))
                offset += step
                if header is not None:
                    assert header.size + len(reader.rest) == min(offset, len(data))
                    break
        except ProxyProtocolError:
            pass
