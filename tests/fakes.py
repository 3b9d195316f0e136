"""Fakes of the project's own seams, shared by the whole suite: a clock that moves only when
told to, and a resolver that answers from a fixed table. (Never fakes of ffmpeg, sockets or
databases: the tests use the real ones.)"""

from __future__ import annotations

import ipaddress

from workers.egress import IPAddress

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"
DNS = {
    "live.example.com": [PUBLIC_V4, PUBLIC_V6],
    "x.example.com": [PUBLIC_V4],
    "10.0.0.5.nip.io": ["10.0.0.5"],
    "mixed.example.com": [PUBLIC_V4, "127.0.0.1"],
    "mapped.example.com": ["::ffff:169.254.169.254"],
}
"""What :class:`FakeResolver` answers (a name not listed does not resolve)."""


class FakeClock:
    """Seconds that move only when told to (a monotonic or a Unix clock, from ``now``)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward."""
        self.now += seconds


class FakeResolver:
    """The resolver seam of the restream output, answering from :data:`DNS`."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append((host, port))
        if host not in DNS:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return [ipaddress.ip_address(a) for a in DNS[host]]
