"""Which outbound URLs liverelay agrees to connect to: restream targets and webhooks.

Restream targets are ``rtmp://`` and ``rtmps://`` URLs, webhooks ``http://`` and ``https://``
URLs; both need a host. Unless private targets are allowed, IP literals that are not globally
routable (loopback, private, link-local, unspecified, reserved, multicast) and ``localhost``
names are refused, including the numeric spellings that ``inet_aton`` accepts (``127.1``,
``2130706433``, ``0x7f000001``). Host names are not resolved here: a public name pointing at a
private address is the connecting side's concern (the webhook dispatcher checks the addresses
it resolves with :func:`is_private_address`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

ALLOWED_SCHEMES = ("rtmp", "rtmps")
WEBHOOK_SCHEMES = ("http", "https")
_FORBIDDEN_CHARACTERS = frozenset(map(chr, range(33))) | {"\x7f"}  # controls and space

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def restream_url_problem(url: str, *, allow_private: bool) -> str | None:
    """Why ``url`` cannot be a restream target, or ``None`` when it can."""
    return url_problem(url, schemes=ALLOWED_SCHEMES, allow_private=allow_private)


def webhook_url_problem(url: str, *, allow_private: bool) -> str | None:
    """Why ``url`` cannot receive webhooks, or ``None`` when it can."""
    return url_problem(url, schemes=WEBHOOK_SCHEMES, allow_private=allow_private)


def url_problem(url: str, *, schemes: Sequence[str], allow_private: bool) -> str | None:
    """Why ``url`` is not an acceptable outbound URL with one of ``schemes``, or ``None``."""
    if any(ch in _FORBIDDEN_CHARACTERS for ch in url):
        return "url must not contain whitespace or control characters"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        return "url is not a valid URL"
    if parts.scheme.lower() not in schemes:
        return "url must start with " + " or ".join(f"{scheme}://" for scheme in schemes)
    host = parts.hostname
    if not host:
        return "url must have a host"
    if not allow_private and _is_private_host(host):
        return "url must not point to a loopback, private, link-local or unspecified address"
    return None


def is_private_address(address: IPAddress) -> bool:
    """Whether ``address`` is not a globally routable unicast address (IPv4-mapped IPv6
    addresses are judged as the IPv4 address they carry)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def _is_private_host(host: str) -> bool:
    host = host.rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address = _ip_literal(host)
    return address is not None and is_private_address(address)


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    try:
        # The legacy forms ffmpeg's resolver accepts too: "127.1", "2130706433", "0x7f.0.0.1".
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None
