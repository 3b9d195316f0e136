"""Who a connection's client is: the peer's address, or the one a trusted proxy reports in its
PROXY header (:mod:`ingest.proxy_protocol`), and the address group the listener's per-address
limits count (:mod:`ingest.limits`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from ingest.proxy_protocol import ProxyHeader

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPV6_GROUP_PREFIX = 64
"""IPv6 clients are counted per /64: one subscriber or host usually has a whole /64 to pick
addresses from."""


def client_ip(host: str) -> IPAddress | None:
    """``host`` as an IP address (an IPv4-mapped IPv6 address as its IPv4 address, a scope id
    dropped), or ``None`` if it is not one."""
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def address_group(host: str) -> str:
    """What the per-address limits count ``host`` as: an IPv4 address itself (also when
    IPv4-mapped), an IPv6 address its /64 (``2001:db8:1:2::/64``); anything else as it is."""
    ip = client_ip(host)
    if ip is None:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, IPV6_GROUP_PREFIX), strict=False))
    return str(ip)


class TrustedProxies:
    """The addresses whose connections must begin with a PROXY header
    (``LIVERELAY_TRUSTED_PROXIES``)."""

    def __init__(self, networks: Iterable[IPNetwork]) -> None:
        self._networks = tuple(networks)

    def trusts(self, host: str) -> bool:
        """Whether ``host`` (a peer's address) is a trusted proxy."""
        ip = client_ip(host)
        return ip is not None and any(ip in network for network in self._networks)


def reported_client(header: ProxyHeader, peer: str, peer_host: str) -> tuple[str, str]:
    """``(client, host)`` of a proxied connection: ``host:port`` and the address the proxy
    reports, or the peer's own (``peer``, ``peer_host``) when the header names no address (a
    ``LOCAL`` health check, ``UNKNOWN``, ``AF_UNSPEC``, ``AF_UNIX``)."""
    if header.source is None:
        return peer, peer_host
    host, port = header.source
    return f"{host}:{port}", host


def peer_address(peer: object) -> tuple[str, str]:
    """``(client, host)`` of a socket's ``peername``: ``host:port`` for the logs and the IP
    address the per-address limits count."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}", str(peer[0])
    return str(peer), str(peer)
