"""The rate of TLS handshakes per client address on the RTMPS port.

A TLS handshake costs the server more than the client (it signs, with the certificate's key),
and the connection caps bound how many are in progress, not how often an address starts a new
one. :class:`HandshakeRate` is a token bucket per address group: ``burst`` handshakes at once,
then ``rate`` per second. The listener asks it at the accept (behind a trusted proxy, once the
PROXY header names the client), so a refused connection is closed before any TLS byte is read
or answered. A failed handshake (plain RTMP on the TLS port, a client refusing the
certificate) takes :data:`FAILED_HANDSHAKE_EXTRA` more: a client that keeps failing gets half
the rate of one that keeps succeeding. Only new connections are refused; connections already
open, publishers included, never are.

A plain object driven by an injected clock; :class:`~ingest.server.RTMPServer` owns one, so
nothing here is module-level state.
"""

from __future__ import annotations

from ingest.client_address import address_group
from ingest.limits import Clock, CloseReason, ConnectionLimitHit

FAILED_HANDSHAKE_EXTRA = 1.0
"""Tokens a failed handshake takes on top of the one its connection took at the accept."""


class HandshakeRate:
    """TLS handshakes per client address: a token bucket of ``burst`` tokens refilled at
    ``rate`` per second (``rate`` 0 turns the limit off). Addresses are counted by
    :func:`~ingest.client_address.address_group`: an IPv6 client per /64.

    At most ``max_addresses`` buckets are remembered: past that, the least recently charged
    are forgotten while they are full (a full bucket is the same as none), then the least
    recently charged one, full or not.
    """

    def __init__(
        self, rate: float, burst: int, *, clock: Clock, max_addresses: int = 10_000
    ) -> None:
        if not rate >= 0 or burst < 1 or max_addresses < 1:
            raise ValueError("rate must be >= 0, burst and max_addresses positive")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_addresses = max_addresses
        self._buckets: dict[str, tuple[float, float]] = {}
        """Address group -> (tokens, clock time they were counted at), least recently charged
        first."""

    def admit(self, address: str) -> ConnectionLimitHit | None:
        """Take a token for a handshake from ``address``; what refuses it if none is left (a
        refusal takes nothing)."""
        if not self.rate:
            return None
        now, group = self._clock(), address_group(address)
        tokens = self._tokens(group, now)
        if tokens < 1:
            wait = (1 - tokens) / self.rate
            return ConnectionLimitHit(
                CloseReason.TLS_HANDSHAKE_THROTTLED,
                f"past {self.burst} TLS handshakes from its address at once and "
                f"{self.rate:g} a second after; next in {wait:.1f} s",
            )
        self._charge(group, tokens - 1, now)
        return None

    def failed(self, address: str) -> None:
        """A handshake from ``address`` failed: take :data:`FAILED_HANDSHAKE_EXTRA` more
        tokens (never below none: an address is admitted again a refill later)."""
        if not self.rate:
            return
        now, group = self._clock(), address_group(address)
        self._charge(group, max(0.0, self._tokens(group, now) - FAILED_HANDSHAKE_EXTRA), now)

    def __len__(self) -> int:
        """Addresses remembered."""
        return len(self._buckets)

    def _tokens(self, group: str, now: float) -> float:
        """The tokens ``group`` has at ``now``."""
        bucket = self._buckets.get(group)
        if bucket is None:
            return float(self.burst)
        tokens, at = bucket
        return min(float(self.burst), tokens + max(0.0, now - at) * self.rate)

    def _charge(self, group: str, tokens: float, now: float) -> None:
        """Keep ``group`` at ``tokens``, last in the order of eviction."""
        if self._buckets.pop(group, None) is None:
            self._make_room(now)
        self._buckets[group] = (tokens, now)

    def _make_room(self, now: float) -> None:
        if len(self._buckets) < self._max_addresses:
            return
        buckets = self._buckets  # the least recently charged first: those full go first
        while buckets and self._tokens(oldest := next(iter(buckets)), now) >= self.burst:
            del buckets[oldest]
        if len(buckets) >= self._max_addresses:
            del self._buckets[next(iter(self._buckets))]
