"""Where a restream ffmpeg connects: the target host resolved and checked in Python right before
every start, so that ffmpeg never resolves a name the policy has not judged.

- ``rtmp://NAME/...``: the name is resolved here, every address is checked, and ffmpeg is handed
  the URL with one checked address in place of the name, plus ``-rtmp_tcurl`` carrying the tcUrl
  ffmpeg would have sent for the name (``rtmp://NAME:PORT/APP``), so ingest services that look
  at the tcUrl see no difference. Each attempt takes the next address in the resolver's order,
  so a target whose first address is unreachable is reached on a retry.
- ``rtmps://NAME/...``: TLS needs the name (SNI, certificate check), so ffmpeg resolves it
  again; the name is resolved and checked here right before every start, which leaves a
  short window in which a name under someone else's control can change its answer (egress
  rules close it).
- IP literals are their own address; schemes are handed to ffmpeg in lower case.

Unless private targets are allowed, a name any of whose addresses is private is refused with
:class:`~workers.egress.TargetAddressRefused` (the output retries with backoff, as for any
failure). With private targets allowed names are still pinned for ``rtmp://`` (same connection
for ffmpeg) but not checked.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from workers.egress import (
    Resolve,
    TargetAddressRefused,
    checked_addresses,
    connect_host,
    ip_literal,
)
from workers.supervisor import PermanentOutputError

RTMP_DEFAULT_PORT = 1935
RTMPS_DEFAULT_PORT = 443
_APP_MAX_LENGTH = 1023  # ffmpeg's APP_MAX_LENGTH (1024) less the terminating NUL


class TargetNotResolved(OSError):
    """The target host name did not resolve (the message is safe to show)."""


@dataclass(frozen=True)
class ConnectPlan:
    """What one start of the restream ffmpeg connects to."""

    url: str
    """The URL handed to ffmpeg (secret: it holds the stream key)."""
    tc_url: str | None = None
    """The ``-rtmp_tcurl`` to send when the host in ``url`` was replaced by an address."""


async def plan_connection(
    publish_url: str, *, resolve: Resolve, allow_private: bool, attempt: int = 1
) -> ConnectPlan:
    """Resolve and check the host of ``publish_url`` (see the module docstring); ``attempt``
    (1, 2, ...) picks the address for ``rtmp://``. Raises
    :class:`~workers.egress.TargetAddressRefused` or :class:`TargetNotResolved`, and
    :class:`~workers.supervisor.PermanentOutputError` for a URL without a valid host (stored
    before the API normalised URLs)."""
    parts = urlsplit(publish_url)
    scheme = parts.scheme.lower()
    try:
        host = connect_host(publish_url)
        explicit_port = parts.port
    except ValueError:
        raise PermanentOutputError("target URL has no valid host") from None
    default_port = RTMPS_DEFAULT_PORT if scheme == "rtmps" else RTMP_DEFAULT_PORT
    port = explicit_port or default_port
    url = scheme + publish_url[len(parts.scheme) :]
    if scheme != "rtmp" and allow_private:
        return ConnectPlan(url)
    try:
        addresses = await checked_addresses(
            host, port, resolve=resolve, allow_private=allow_private
        )
    except TargetAddressRefused:
        raise
    except OSError as exc:
        raise TargetNotResolved("target host does not resolve") from exc
    if scheme != "rtmp" or ip_literal(host) is not None:
        return ConnectPlan(url)
    address = addresses[(attempt - 1) % len(addresses)]
    return ConnectPlan(
        _with_host(url, parts.netloc, _url_host(address)),
        tc_url=f"{scheme}://{_url_host_name(host)}:{port}/{rtmp_app(parts)}",
    )


def rtmp_app(parts: SplitResult) -> str:
    """The RTMP application name ffmpeg (9.x, ``rtmpproto.c``) derives from the URL path when
    no ``-rtmp_app`` is given: the first path segment, or the first two when the playpath
    continues after a second ``/`` (unless a ``:`` comes first), the whole path before an
    ``slist=`` query, ``ondemand`` for ``/ondemand/``."""
    path = parts.path
    if parts.query:
        path += "?" + parts.query
    if parts.fragment:
        path += "#" + parts.fragment
    qmark = path.find("?")
    if qmark >= 0 and "slist=" in path[qmark:]:
        app = path[1:]
    elif path.startswith("/ondemand/"):
        app = "ondemand"
    else:
        rest = path[1:] if path else path
        first = rest.find("/")
        if first < 0:
            app = rest
        else:
            first += 1  # index in path
            colon = path.find(":", first + 1)
            second = path.find("/", first + 1)
            if second < 0 or (0 <= colon < second):
                app = path[1:first]
            else:
                app = path[1:second]
    return app[:_APP_MAX_LENGTH]


def _url_host(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return f"[{address.compressed}]" if address.version == 6 else address.compressed


def _url_host_name(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _with_host(url: str, netloc: str, host: str) -> str:
    """``url`` with the host of its authority ``netloc`` replaced by ``host``."""
    userinfo, at, hostport = netloc.rpartition("@")
    if hostport.startswith("["):
        port_part = hostport[hostport.index("]") + 1 :]
    else:
        _, colon, port = hostport.partition(":")
        port_part = colon + port
    start = url.index("://") + 3
    return url[:start] + f"{userinfo}{at}{host}{port_part}" + url[start + len(netloc) :]
