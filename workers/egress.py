"""Which network addresses liverelay's outbound connections (restream targets, webhooks) may
reach, judged the way the connecting side will see the host.

A host is judged after the normalisation the HTTP client applies (yarl: lower case, IDNA with
UTS #46, which includes NFKC, so ``127.0.0.1`` written with full-width digits, ideographic full
stops or circled digits is ``127.0.0.1``), then as an IP literal in every spelling the system
resolver accepts (decimal, octal and hex IPv4 such as ``2130706433``, ``0177.0.0.1`` and
``0x7f.1``, with or without a trailing dot). An address is private unless it is globally
routable unicast; IPv6 addresses that carry an IPv4 address are judged by the IPv4 address they
reach: IPv4-mapped ``::ffff:0:0/96``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16`` and Teredo
(server and client). The deprecated IPv4-compatible block ``::/96`` and the local-use NAT64
block ``64:ff9b:1::/48`` are refused as a whole. Host names are resolved by
:func:`resolve_addresses` (the seam tests replace).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable

from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[[str, int], Awaitable[list[IPAddress]]]
"""Resolves ``(host, port)`` to the addresses a TCP connection may use."""

_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


class TargetAddressRefused(OSError):
    """A target host is, or resolves to, an address outbound connections may not reach."""


def connect_host(url: str) -> str:
    """The host a client connects to for ``url``, normalised as yarl (and so aiohttp) does:
    lower case, IDNA-encoded ASCII, IPv6 without brackets in compressed form.
    :class:`ValueError` when yarl refuses the host or there is none."""
    host = URL(url).raw_host
    if not host:
        raise ValueError("url has no host")
    return host[1:-1] if host.startswith("[") else host


def ip_literal(host: str) -> IPAddress | None:
    """``host`` as an IP address if it spells one (any form ``inet_aton`` takes, trailing dots
    and an IPv6 zone ignored), else ``None``."""
    host = host.rstrip(".")
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    try:
        # The legacy forms getaddrinfo (and so ffmpeg) accepts: "127.1", "2130706433", "0x7f.1".
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def is_private_address(address: IPAddress) -> bool:
    """Whether ``address`` is not a globally routable unicast address, or carries one that is
    not (see the module docstring for the IPv6 embeddings)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _IPV4_COMPATIBLE or address in _NAT64_LOCAL:
            return True
        embedded = _embedded_ipv4(address)
        if any(is_private_address(ipv4) for ipv4 in embedded):
            return True
    return not address.is_global or address.is_multicast


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address in _NAT64:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)
    return []


def is_private_host(host: str) -> bool:
    """Whether the normalised ``host`` (see :func:`connect_host`) is a ``localhost`` name or a
    private IP literal. Other names are judged by what they resolve to."""
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    address = ip_literal(name)
    return address is not None and is_private_address(address)


async def resolve_addresses(host: str, port: int) -> list[IPAddress]:
    """The TCP addresses of ``host`` from the system resolver (``getaddrinfo``, as ffmpeg uses),
    in its order, without repeats. :class:`OSError` when it does not resolve."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: dict[IPAddress, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        found[ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])] = None
    return list(found)


async def checked_addresses(
    host: str, port: int, *, resolve: Resolve, allow_private: bool
) -> list[IPAddress]:
    """The addresses of ``host`` (an IP literal is its own), refused as a whole with
    :class:`TargetAddressRefused` if the name is private or any address is (unless
    ``allow_private``): a name that answers with one private address among public ones is
    refused rather than trimmed, since which one a later lookup returns is the name owner's
    choice."""
    if not allow_private and is_private_host(host):
        raise TargetAddressRefused("target host is a loopback, private or link-local address")
    literal = ip_literal(host)
    addresses = [literal] if literal is not None else await resolve(host, port)
    if not addresses:
        raise OSError(f"{host} has no address")
    if not allow_private and any(is_private_address(a) for a in addresses):
        raise TargetAddressRefused("target host resolves to a private address")
    return addresses
