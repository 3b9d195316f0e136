"""A sans-IO reader of the PROXY protocol header (versions 1 and 2), which a TCP proxy or load
balancer sends first on a connection to say whom it carries.

Bytes go in with :meth:`ProxyHeaderReader.receive_data`; out comes ``None`` (more bytes are
needed), a :class:`ProxyHeader`, or :class:`ProxyProtocolError`, the one exception that escapes.
The bytes after the header (an RTMP handshake sent in the same segment) are kept untouched in
:attr:`ProxyHeaderReader.rest`. The reader never waits for more than the header can hold: 107
bytes for a version 1 line, ``max_v2_size`` for version 2, and a byte that no header can begin
with is an error at once. Section numbers cite HAProxy's "The PROXY protocol" (versions 1 & 2).
Why this is not a library from PyPI: docs/decisions.md, decision 11.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "V1_MAX_SIZE",
    "V2_DEFAULT_MAX_SIZE",
    "ProxyHeader",
    "ProxyHeaderReader",
    "ProxyProtocolError",
    "starts_like_proxy_header",
]

V1_SIGNATURE = b"PROXY "
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX_SIZE = 107
"""2.1: the longest version 1 line, ``\\r\\n`` included."""
V2_FIXED_SIZE = 16
"""2.2: the signature, version and command, family and transport, and the length."""
V2_DEFAULT_MAX_SIZE = 4096
"""The largest version 2 header (fixed part, addresses and TLVs) accepted by default. Proxies
send well under 1 KiB (addresses, a unique id, TLS details); the format allows 65,551 bytes."""
_V2_ADDRESSES = {0x1: 12, 0x2: 36, 0x3: 216}
"""2.2: the address block's size by family (AF_INET, AF_INET6, AF_UNIX)."""
_PORT = re.compile(r"0|[1-9][0-9]{0,4}")


class ProxyProtocolError(Exception):
    """The bytes are not a PROXY protocol header the reader accepts; the message says why."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing
        """Whether the bytes do not begin like a header at all (rather than a broken one)."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What a proxy said about the connection it carries."""

    version: Literal[1, 2]
    """1 (text line) or 2 (binary)."""
    command: Literal["proxy", "local"]
    """``proxy``: a relayed client; ``local``: the proxy's own connection (a health check)."""
    source: tuple[str, int] | None
    """The client's address and port, or ``None`` when the header names none (version 1
    ``UNKNOWN``, version 2 ``LOCAL``, ``AF_UNSPEC`` or ``AF_UNIX``): the connection's own peer
    is the client then."""
    destination: tuple[str, int] | None
    """The address and port the client connected to at the proxy, when ``source`` is set."""
    tlvs: tuple[tuple[int, bytes], ...] = ()
    """Version 2 type-length-value extensions (2.2.1-2.2.8) as (type, value), in order; kept,
    not interpreted (the CRC32C one is not verified)."""
    size: int = 0
    """Bytes the header took on the wire."""


def starts_like_proxy_header(data: bytes | memoryview) -> bool:
    """Whether ``data`` (at least one byte) begins like a version 1 or 2 header."""
    head = bytes(data[: len(V2_SIGNATURE)])
    return bool(head) and (V1_SIGNATURE.startswith(head[:6]) or V2_SIGNATURE.startswith(head))


class ProxyHeaderReader:
    """Reads one PROXY header from the start of a connection (see the module docstring)."""

    def __init__(self, *, max_v2_size: int = V2_DEFAULT_MAX_SIZE) -> None:
        if max_v2_size < V2_FIXED_SIZE + _V2_ADDRESSES[0x2]:
            raise ValueError(f"max_v2_size must be at least 52 bytes, not {max_v2_size}")
        self._max_v2_size = max_v2_size
        self._buffer = bytearray()
        self.header: ProxyHeader | None = None
        """The header, once read."""
        self.rest = b""
        """The bytes received after the header, once it is read."""

    def receive_data(self, data: bytes | memoryview) -> ProxyHeader | None:
        """Take ``data``; the header once it is complete, ``None`` while it is not. Raises
        :class:`ProxyProtocolError` if the bytes cannot be a header, and after the header is
        read (what follows it is the caller's: :attr:`rest`)."""
        if self.header is not None:
            raise ProxyProtocolError("PROXY header already read")
        self._buffer += data
        header = parse_proxy_header(self._buffer, max_v2_size=self._max_v2_size)
        if header is not None:
            self.header, self.rest = header, bytes(self._buffer[header.size :])
            self._buffer.clear()
        return header


def parse_proxy_header(
    data: bytes | bytearray | memoryview, *, max_v2_size: int = V2_DEFAULT_MAX_SIZE
) -> ProxyHeader | None:
    """The header at the start of ``data``, or ``None`` if ``data`` is a true but incomplete
    beginning of one; :class:`ProxyProtocolError` otherwise."""
    if not data:
        return None
    head = bytes(data[: len(V2_SIGNATURE)])
    if V2_SIGNATURE.startswith(head):
        return _parse_v2(data, max_v2_size)
    if V1_SIGNATURE.startswith(head[:6]):
        return _parse_v1(data)
    raise ProxyProtocolError(
        f"no PROXY protocol header: the connection begins with {head[:8]!r}", missing=True
    )


# -- version 1 (2.1): "PROXY TCP4 192.0.2.1 198.51.100.1 56324 1935\r\n" ----------------------


def _parse_v1(data: bytes | bytearray | memoryview) -> ProxyHeader | None:
    window = bytes(data[:V1_MAX_SIZE])
    end = window.find(b"\n")
    if end < 0:
        if len(window) >= V1_MAX_SIZE:
            raise ProxyProtocolError(
                f"PROXY v1 header has no CRLF in its first {V1_MAX_SIZE} bytes"
            )
        return None
    if end == 0 or window[end - 1] != 0x0D:
        raise ProxyProtocolError("PROXY v1 header ends without CRLF")
    try:
        line = window[len(V1_SIGNATURE) : end - 1].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("PROXY v1 header is not ASCII") from None
    size = end + 1
    protocol, _, addresses = line.partition(" ")
    if protocol == "UNKNOWN":  # 2.1: the rest of the line is ignored
        return ProxyHeader(1, "proxy", None, None, size=size)
    if protocol not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(f"PROXY v1 header has unknown protocol {protocol[:8]!r}")
    parts = addresses.split(" ")
    if len(parts) != 4:
        raise ProxyProtocolError(f"PROXY v1 {protocol} header needs 4 fields, not {len(parts)}")
    version = 4 if protocol == "TCP4" else 6
    source = (_v1_address(parts[0], version), _v1_port(parts[2]))
    destination = (_v1_address(parts[1], version), _v1_port(parts[3]))
    return ProxyHeader(1, "proxy", source, destination, size=size)


def _v1_address(text: str, version: int) -> str:
    try:
        if version == 4:
            return str(ipaddress.IPv4Address(text))
        if "%" not in text:  # a scope id names an interface of the proxy, not an address
            return str(ipaddress.IPv6Address(text))
    except ValueError:
        pass
    raise ProxyProtocolError(f"PROXY v1 header has an invalid IPv{version} address {text[:45]!r}")


def _v1_port(text: str) -> int:
    if _PORT.fullmatch(text) and int(text) <= 65535:
        return int(text)
    raise ProxyProtocolError(f"PROXY v1 header has an invalid port {text[:8]!r}")


# -- version 2 (2.2): a 16-byte fixed part, then addresses and TLVs --------------------------


def _parse_v2(data: bytes | bytearray | memoryview, max_size: int) -> ProxyHeader | None:
    if len(data) < V2_FIXED_SIZE:
        return None
    version_command, family_transport, length = struct.unpack_from("!BBH", data, 12)
    if version_command >> 4 != 2:
        raise ProxyProtocolError(f"PROXY v2 header has version {version_command >> 4}, not 2")
    command = version_command & 0x0F
    if command not in (0x0, 0x1):
        raise ProxyProtocolError(f"PROXY v2 header has unknown command {command:#x}")
    size = V2_FIXED_SIZE + length
    if size > max_size:
        raise ProxyProtocolError(f"PROXY v2 header of {size} bytes exceeds {max_size} bytes")
    if len(data) < size:
        return None
    if command == 0x0:  # LOCAL: the block, family included, is discarded (2.2)
        return ProxyHeader(2, "local", None, None, size=size)
    block = bytes(data[V2_FIXED_SIZE:size])
    family, transport = family_transport >> 4, family_transport & 0x0F
    if family == 0x0:  # AF_UNSPEC: the receiver uses the connection's own addresses
        return ProxyHeader(2, "proxy", None, None, size=size)
    if family not in _V2_ADDRESSES or transport not in (0x0, 0x1, 0x2):
        raise ProxyProtocolError(f"PROXY v2 header has unknown family {family_transport:#04x}")
    needed = _V2_ADDRESSES[family]
    if length < needed:
        raise ProxyProtocolError(
            f"PROXY v2 address block of {length} bytes is shorter than {needed} bytes"
        )
    tlvs = _v2_tlvs(block[needed:])
    if family == 0x3:  # AF_UNIX: no address to report
        return ProxyHeader(2, "proxy", None, None, tlvs, size=size)
    source, destination = _v2_addresses(block[:needed], family)
    return ProxyHeader(2, "proxy", source, destination, tlvs, size=size)


def _v2_addresses(block: bytes, family: int) -> tuple[tuple[str, int], tuple[str, int]]:
    width = 4 if family == 0x1 else 16
    source_port, destination_port = struct.unpack_from("!HH", block, 2 * width)
    source = ipaddress.ip_address(block[:width])
    destination = ipaddress.ip_address(block[width : 2 * width])
    return (str(source), source_port), (str(destination), destination_port)


def _v2_tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    """2.2.1: type (1 byte), length (2 bytes), value; nothing may be left over."""
    tlvs: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 3:
            raise ProxyProtocolError("PROXY v2 header has a truncated TLV")
        kind, length = struct.unpack_from("!BH", data, offset)
        offset += 3
        if offset + length > len(data):
            raise ProxyProtocolError(f"PROXY v2 TLV {kind:#04x} overruns the header")
        tlvs.append((kind, data[offset : offset + length]))
        offset += length
    return tuple(tlvs)
