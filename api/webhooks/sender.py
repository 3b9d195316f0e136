"""One webhook POST: sign the body, send it, say what happened.

The signature header is ``Liverelay-Signature: t=<unix seconds>,v1=<hex>``, where ``<hex>`` is
the HMAC-SHA256, keyed with the webhook's secret, of ``"<t>.<raw body>"`` (docs/webhooks.md
shows how to check it). Redirects are not followed. Unless private targets are allowed, nothing
private is connected to: right before each POST the host is judged as the HTTP client will read
it (aiohttp connects to IP literals without asking the resolver, so this check is the one that
sees them, including URLs stored before the policy knew a spelling), and a host name is resolved
through :class:`PublicAddressResolver`, which drops loopback, private and link-local addresses
(the URL check at creation cannot see what a name resolves to later).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from dataclasses import dataclass
from importlib import metadata

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from workers.egress import connect_host, is_private_address, is_private_host

SIGNATURE_HEADER = "Liverelay-Signature"
EVENT_ID_HEADER = "Liverelay-Event-Id"
EVENT_TYPE_HEADER = "Liverelay-Event-Type"
MAX_ERROR_LENGTH = 512
PRIVATE_HOST_ERROR = "not sent: the webhook host is a loopback, private or link-local address"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The value of the ``Liverelay-Signature`` header for ``body`` sent at ``timestamp``."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def user_agent() -> str:
    """``liverelay-webhooks/<version>``."""
    try:
        version = metadata.version("liverelay")
    except metadata.PackageNotFoundError:
        version = "0.0.0"
    return f"liverelay-webhooks/{version}"


@dataclass(frozen=True)
class Attempt:
    """The outcome of one POST."""

    delivered: bool
    """The receiver answered 2xx."""
    status_code: int | None
    """The HTTP status it answered, ``None`` when there was no answer."""
    error: str | None
    """Why it was not delivered (``None`` when delivered)."""


class PublicAddressResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, minus non-public addresses."""

    def __init__(self) -> None:
        self._resolver = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The public addresses of ``host``; :class:`OSError` when it has none."""
        results = await self._resolver.resolve(host, port, family)
        public = [r for r in results if not is_private_address(ipaddress.ip_address(r["host"]))]
        if not public:
            raise OSError(f"{host} resolves only to loopback, private or link-local addresses")
        return public

    async def close(self) -> None:
        """Release the wrapped resolver."""
        await self._resolver.close()


class WebhookSender:
    """POSTs signed event bodies, at most ``connections`` at once, each within ``timeout``."""

    def __init__(self, *, timeout: float, allow_private: bool, connections: int = 100) -> None:
        self._timeout = timeout
        self._allow_private = allow_private
        self._connections = connections
        self._user_agent = user_agent()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the HTTP client (inside the running event loop)."""
        resolver = None if self._allow_private else PublicAddressResolver()
        connector = aiohttp.TCPConnector(limit=self._connections, resolver=resolver)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            trust_env=False,
        )

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(
        self, url: str, *, secret: str, body: str, event_id: str, event_type: str, now: float
    ) -> Attempt:
        """Send ``body`` to ``url`` once; never raises for network or HTTP failures."""
        if self._session is None:
            raise RuntimeError("WebhookSender.post before start")
        refused = self._refusal(url)
        if refused is not None:
            return Attempt(False, None, refused)
        raw = body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self._user_agent,
            SIGNATURE_HEADER: signature(secret, int(now), raw),
            EVENT_ID_HEADER: event_id,
            EVENT_TYPE_HEADER: event_type,
        }
        try:
            async with self._session.post(
                url, data=raw, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
        except TimeoutError:
            return Attempt(False, None, f"no answer within {self._timeout:g} s")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return Attempt(False, None, _describe(exc, url))
        if 200 <= status < 300:
            return Attempt(True, status, None)
        return Attempt(False, status, f"answered HTTP {status}")

    def _refusal(self, url: str) -> str | None:
        """Why ``url`` must not be connected to, judged on the host exactly as aiohttp reads it
        (yarl's normalised host), or ``None``."""
        if self._allow_private:
            return None
        try:
            host = connect_host(url)
        except ValueError:
            return "not sent: the webhook URL has no valid host"
        return PRIVATE_HOST_ERROR if is_private_host(host) else None


def _describe(exc: BaseException, url: str) -> str:
    """What went wrong, without the URL (it may carry credentials or tokens)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or str(exc.os_error)
        return f"cannot connect to {exc.host}:{exc.port}: {reason}"[:MAX_ERROR_LENGTH]
    message = str(exc).replace(url, "<url>")
    return (f"{type(exc).__name__}: {message}" if message else type(exc).__name__)[
        :MAX_ERROR_LENGTH
    ]
