"""Limits of the RTMP listener: across connections, open connections per client address and
the throttling of stream-key guessing; per connection, the publish bitrate and the replies a
client leaves unread. Also the stable names of the reasons a connection is closed early and the
exception that ends a connection at a limit.

Plain objects driven by an injected clock; :class:`~ingest.server.RTMPServer` owns the
listener-wide ones and each connection's transport its own, so nothing here is module-level
state.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable

from ingest.client_address import address_group
from ingest.stats import BitrateMeter

Clock = Callable[[], float]
"""Monotonic seconds (``time.monotonic`` in production, a fake in tests)."""
BITRATE_WINDOW_SECONDS = 5
"""Window over which ``LIVERELAY_RTMP_MAX_PUBLISH_KBPS`` is averaged."""


class CloseReason(enum.StrEnum):
    """Why a connection was closed early. The values are stable: they are the keys of
    :attr:`RTMPServer.rejected <ingest.server.RTMPServer.rejected>` and metrics labels."""

    CONNECTION_LIMIT = "connection_limit"
    """``LIVERELAY_RTMP_MAX_CONNECTIONS`` connections were already open."""
    ADDRESS_LIMIT = "address_limit"
    """``LIVERELAY_RTMP_MAX_CONNECTIONS_PER_ADDRESS`` connections not yet publishing were
    already open from the address."""
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    """Not publishing ``LIVERELAY_RTMP_HANDSHAKE_TIMEOUT`` seconds after connecting."""
    IDLE_TIMEOUT = "idle_timeout"
    """A publisher sent nothing for ``LIVERELAY_RTMP_IDLE_TIMEOUT`` seconds."""
    PROTOCOL_ERROR = "protocol_error"
    """The peer broke the RTMP protocol or one of its size limits."""
    BITRATE_LIMIT = "bitrate_limit"
    """The peer sent faster than ``LIVERELAY_RTMP_MAX_PUBLISH_KBPS``."""
    SLOW_READER = "slow_reader"
    """The peer left more than ``LIVERELAY_RTMP_MAX_SEND_BUFFER`` bytes of replies unread."""
    BAD_APP = "bad_app"
    """``connect`` to an application other than ``live``."""
    BAD_KEY = "bad_key"
    """The authorizer refused the stream key."""
    AUTH_THROTTLED = "auth_throttled"
    """Publish refused without asking the authorizer: too many bad keys from the address."""
    ALREADY_PUBLISHING = "already_publishing"
    """A second publish on a connection that is publishing."""
    AUTH_UNAVAILABLE = "auth_unavailable"
    """The stream key could not be checked (the database is unreachable)."""
    LIVE_ELSEWHERE = "live_elsewhere"
    """The stream is live on another node sharing the database (it holds the lease)."""
    DRAINING = "draining"
    """Publish refused: the node is draining (``liverelay drain`` or SIGTERM)."""
    SHUTDOWN = "shutdown"
    """Publish refused: the node is shutting down."""
    PLAY_REFUSED = "play_refused"
    """RTMP playback requested (liverelay plays over HLS only)."""
    PROXY_HEADER_MISSING = "proxy_header_missing"
    """A trusted proxy's connection did not begin with a PROXY header
    (``LIVERELAY_RTMP_PROXY_PROTOCOL``)."""
    PROXY_HEADER_INVALID = "proxy_header_invalid"
    """A trusted proxy sent a malformed or oversized PROXY header."""
    PROXY_HEADER_UNTRUSTED = "proxy_header_untrusted"
    """A PROXY header from an address not in ``LIVERELAY_TRUSTED_PROXIES``."""
    TLS_HANDSHAKE_FAILED = "tls_handshake_failed"
    """The TLS handshake on the RTMPS port failed: not TLS (plain RTMP), no protocol or cipher
    in common, or the client refused the certificate (its alert is in the log line)."""
    TLS_HANDSHAKE_THROTTLED = "tls_handshake_throttled"
    """Closed at the accept on the RTMPS port, before any TLS work: the client address started
    more TLS handshakes than ``LIVERELAY_RTMPS_HANDSHAKE_BURST`` and
    ``LIVERELAY_RTMPS_HANDSHAKE_RATE`` allow (:mod:`ingest.handshake_rate`)."""


class ConnectionLimitHit(Exception):
    """A limit of the listener ends a connection; the message is the logged detail."""

    def __init__(self, reason: CloseReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class BitrateLimit:
    """``LIVERELAY_RTMP_MAX_PUBLISH_KBPS`` for one connection: what it sends, averaged over
    :data:`BITRATE_WINDOW_SECONDS`."""

    def __init__(self, max_kbps: int, *, clock: Clock) -> None:
        self._max_kbps = max_kbps
        self._clock = clock
        self._meter = BitrateMeter(BITRATE_WINDOW_SECONDS)

    def check(self, size: int) -> None:
        """Count ``size`` bytes received now; raise :class:`ConnectionLimitHit` past the
        limit."""
        now = self._clock()
        self._meter.add(now, size)
        kbps, most = self._meter.kbps(now), self._max_kbps
        if kbps > most:
            raise ConnectionLimitHit(
                CloseReason.BITRATE_LIMIT,
                f"{kbps:.0f} kbit/s over {BITRATE_WINDOW_SECONDS} s exceeds {most} kbit/s",
            )


def check_send_buffer(unsent: int, most: int) -> None:
    """Raise :class:`ConnectionLimitHit` if a client left more than ``most`` bytes of replies
    unread (``LIVERELAY_RTMP_MAX_SEND_BUFFER``)."""
    if unsent > most:
        raise ConnectionLimitHit(
            CloseReason.SLOW_READER, f"client does not read: {unsent} bytes unsent"
        )


def idle_timeout(seconds: float) -> ConnectionLimitHit:
    """A publisher sent nothing for ``seconds`` (``LIVERELAY_RTMP_IDLE_TIMEOUT``)."""
    return ConnectionLimitHit(CloseReason.IDLE_TIMEOUT, f"no data for {seconds:g} s")


def handshake_timeout(seconds: float, stage: str = "") -> ConnectionLimitHit:
    """A client was not publishing ``seconds`` after connecting
    (``LIVERELAY_RTMP_HANDSHAKE_TIMEOUT``); ``stage`` says what it had not finished."""
    message = f"not publishing {seconds:g} s after connecting"
    return ConnectionLimitHit(
        CloseReason.HANDSHAKE_TIMEOUT, f"{message} ({stage})" if stage else message
    )


class AddressConnections:
    """Open connections per client address, refused past ``per_address``. Addresses are
    counted by :func:`~ingest.client_address.address_group`: an IPv6 client per /64."""

    def __init__(self, per_address: int) -> None:
        if per_address < 1:
            raise ValueError(f"per_address must be positive, not {per_address}")
        self._per_address = per_address
        self._open: dict[str, int] = {}

    def acquire(self, address: str) -> bool:
        """Count one more connection from ``address``; ``False`` (nothing counted) if it
        already has the maximum open."""
        address = address_group(address)
        count = self._open.get(address, 0)
        if count >= self._per_address:
            return False
        self._open[address] = count + 1
        return True

    def release(self, address: str) -> None:
        """One connection from ``address`` closed."""
        address = address_group(address)
        count = self._open.get(address, 0) - 1
        if count > 0:
            self._open[address] = count
        else:
            self._open.pop(address, None)

    def open(self, address: str) -> int:
        """Connections open from ``address`` (its group) now."""
        return self._open.get(address_group(address), 0)

    def __len__(self) -> int:
        """Addresses with a connection open (addresses at zero are forgotten)."""
        return len(self._open)


class AuthFailureThrottle:
    """Refused stream keys per client address over a sliding window.

    Once an address has had ``max_failures`` keys refused within ``window`` seconds it is
    :meth:`blocked` until the oldest of them is ``window`` seconds old: its publishes are then
    refused without asking the authorizer, which makes guessing keys slow and cheap to refuse.
    ``max_failures`` 0 turns the throttle off. Addresses are counted by
    :func:`~ingest.client_address.address_group`: an IPv6 client per /64. At most
    ``max_addresses`` addresses are remembered (each keeps at most ``max_failures`` times);
    past that, expired entries are dropped and then the least recently failing address.
    """

    def __init__(
        self,
        max_failures: int,
        *,
        clock: Clock,
        window: float = 60.0,
        max_addresses: int = 10_000,
    ) -> None:
        if max_failures < 0 or window <= 0 or max_addresses < 1:
            raise ValueError("max_failures must be >= 0, window and max_addresses positive")
        self.max_failures = max_failures
        self.window = window
        self._clock = clock
        self._max_addresses = max_addresses
        self._failures: dict[str, deque[float]] = {}

    def blocked(self, address: str) -> bool:
        """Whether publishes from ``address`` are refused without asking the authorizer."""
        return self.retry_after(address) > 0

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` is no longer blocked (0 if it is not)."""
        times = self._failures.get(address_group(address))
        if not self.max_failures or times is None or len(times) < self.max_failures:
            return 0.0
        return max(0.0, times[0] + self.window - self._clock())

    def record_failure(self, address: str) -> bool:
        """Count a refused key from ``address``; returns whether this one blocks it."""
        if not self.max_failures:
            return False
        now = self._clock()
        address = address_group(address)
        times = self._failures.pop(address, None)  # re-inserted last: least recent failing first
        if times is None:
            self._make_room(now)
            times = deque(maxlen=self.max_failures)
        times.append(now)
        self._failures[address] = times
        return self.blocked(address)

    def __len__(self) -> int:
        """Addresses remembered."""
        return len(self._failures)

    def _make_room(self, now: float) -> None:
        if len(self._failures) < self._max_addresses:
            return
        expired = [a for a, times in self._failures.items() if times[-1] <= now - self.window]
        for address in expired:
            del self._failures[address]
        if len(self._failures) >= self._max_addresses:
            del self._failures[next(iter(self._failures))]
