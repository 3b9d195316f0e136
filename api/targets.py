"""Which restream target URLs liverelay agrees to push to.

Only ``rtmp://`` and ``rtmps://`` URLs with a host. Unless private targets are allowed, IP
literals that are not globally routable (loopback, private, link-local, unspecified, reserved,
multicast) and ``localhost`` names are refused, including the numeric spellings that
``inet_aton`` accepts (``127.1``, ``2130706433``, ``0x7f000001``). Host names are not resolved
here: a public name pointing at a private address is the output worker's concern.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

ALLOWED_SCHEMES = ("rtmp", "rtmps")
_FORBIDDEN_CHARACTERS = frozenset(map(chr, range(33))) | {"\x7f"}  # controls and space


def restream_url_problem(url: str, *, allow_private: bool) -> str | None:
    """Why ``url`` cannot be a restream target, or ``None`` when it can."""
    if any(ch in _FORBIDDEN_CHARACTERS for ch in url):
        return "url must not contain whitespace or control characters"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return "url is not a valid URL"
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        return "url must start with rtmp:// or rtmps://"
    host = parts.hostname
    if not host:
        return "url must have a host"
    if not allow_private and _is_private_host(host):
        return "url must not point to a loopback, private, link-local or unspecified address"
    return None


def _is_private_host(host: str) -> bool:
    host = host.rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address = _ip_literal(host)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    try:
        # The legacy forms ffmpeg's resolver accepts too: "127.1", "2130706433", "0x7f.0.0.1".
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None
