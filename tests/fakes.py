"""Fakes of the project's own seams, shared by the whole suite: a clock that moves only when
told to, a resolver that answers from a fixed table, a publish authorizer that holds its
answer until a test releases it, live paths that admit publishers by a table of keys,
stream ownership leases from a table, and a recording store in memory. (Never fakes of
ffmpeg, sockets, databases or object storage: the tests use the real ones.)"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ingest.authorizer import PublishAuthorizer, PublishDenied, PublishGrant
from ingest.hub import StreamHub
from ingest.live import EndReason, Publisher
from workers.egress import IPAddress
from workers.ownership import Claim, HeldElsewhere, Owned
from workers.recording import RecordingSummary

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


@dataclass
class HeldCheck:
    """One key check held by :class:`GatedAuthorizer`."""

    checked: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the key was checked: the answer is known but not yet given."""
    released: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by the test to let the answer go."""

    def release(self) -> None:
        """Give the answer now."""
        self.released.set()


class GatedAuthorizer:
    """A publish authorizer that asks ``inner`` (the real one) and, for each call a test asked
    to hold, waits after the key check until the test releases it: "key checked, publish not yet
    registered" lasts exactly as long as the test wants, so interleavings are driven, not hoped
    for. Calls nobody asked to hold answer at once."""

    def __init__(self, inner: PublishAuthorizer | None = None) -> None:
        self.inner = inner
        self._holds: deque[HeldCheck] = deque()
        self.calls = 0
        """Key checks asked so far."""

    def hold_next(self) -> HeldCheck:
        """Hold the next key check not yet claimed by an earlier ``hold_next``."""
        hold = HeldCheck()
        self._holds.append(hold)
        return hold

    async def authorize_publish(self, stream_key: str, client_address: str) -> PublishGrant:
        """The inner answer, given when the held check (if this call is one) is released."""
        assert self.inner is not None, "GatedAuthorizer.inner is not set"
        self.calls += 1
        hold = self._holds.popleft() if self._holds else None
        try:
            return await self.inner.authorize_publish(stream_key, client_address)
        finally:
            if hold is not None:
                hold.checked.set()
                await hold.released.wait()


class KeyTable:
    """A publish authorizer answering from a table of stream keys (``grants``), which a test
    edits as the API would the database."""

    def __init__(self) -> None:
        self.grants: dict[str, PublishGrant] = {}

    async def authorize_publish(self, stream_key: str, client_address: str) -> PublishGrant:
        """The grant of ``stream_key``, or :class:`PublishDenied`."""
        grant = self.grants.get(stream_key)
        if grant is None:
            raise PublishDenied("unknown stream key")
        return grant


@dataclass
class Departure:
    """A publisher leaving a :class:`StubPath`."""

    publisher: Publisher
    clean: bool
    reason: EndReason


class StubPath:
    """A live path as a publishing connection sees it: a real hub for its media, and a record
    of its publisher leaving. The test plays the path's side with :attr:`publisher`."""

    def __init__(self, stream_id: str, publisher: Publisher) -> None:
        self.stream_id = stream_id
        self.publisher = publisher
        self.hub = StreamHub(stream_id, queue_bytes=1_000_000)
        self.departures: list[Departure] = []
        self.left = asyncio.Event()

    async def leave(self, publisher: Publisher, *, clean: bool, reason: EndReason) -> None:
        self.departures.append(Departure(publisher, clean, reason))
        self.left.set()


class StubAdmission:
    """Admits the publishers of the stream keys in :attr:`keys` (key -> stream id), each to a
    new :class:`StubPath`; other keys are refused. With :attr:`error` set every admission
    fails with it (the key's backend is down)."""

    def __init__(self, keys: dict[str, str] | None = None) -> None:
        self.keys = dict(keys or {})
        self.error: Exception | None = None
        self.paths: list[StubPath] = []
        self.asked: list[str] = []
        """Stream keys asked about, in order."""

    async def admit(self, stream_key: str, publisher: Publisher) -> StubPath:
        self.asked.append(stream_key)
        if self.error is not None:
            raise self.error
        stream_id = self.keys.get(stream_key)
        if stream_id is None:
            raise PublishDenied("unknown stream key")
        path = StubPath(stream_id, publisher)
        self.paths.append(path)
        return path


class MemoryStore:
    """Keeps recordings in a dict, like the database would."""

    def __init__(self, *, fail_start: bool = False) -> None:
        self.rows: dict[str, RecordingSummary] = {}
        self.fail_start = fail_start

    async def recording_started(
        self,
        stream_id: str,
        started_at: float,
        *,
        session_id: str | None = None,
        generation: int | None = None,
    ) -> str:
        if self.fail_start:
            raise ConnectionError("database is down")
        rid = f"{len(self.rows) + 1:024x}"
        self.rows[rid] = RecordingSummary(
            rid, stream_id, "recording", started_at, lease_generation=generation
        )
        return rid

    async def recording_finished(self, summary: RecordingSummary) -> None:
        current = self.rows[summary.recording_id].lease_generation
        if current is not None and (summary.lease_generation or current) < current:
            return  # a stale owner's final state, as the database refuses it
        self.rows[summary.recording_id] = summary

    async def unfinished_recordings(self) -> Sequence[RecordingSummary]:
        return [r for r in self.rows.values() if r.status == "recording"]


class FakeOwnership:
    """Stream ownership leases of one node, as :class:`workers.ownership.Ownership`, from a
    table the test edits: :attr:`elsewhere` names the node holding a stream's live lease.
    Claims, releases and requests to hand over are recorded; :meth:`lose` plays the keeper
    reporting a lost lease. With ``hands_over`` the owner gives the stream up when asked."""

    def __init__(self, *, hands_over: bool = False) -> None:
        self.elsewhere: dict[str, str] = {}
        self.held: dict[str, int] = {}
        self.generations: dict[str, int] = {}
        self.claims: list[str] = []
        self.released: list[tuple[str, int]] = []
        self.asked: list[tuple[str, str]] = []
        self.hands_over = hands_over
        self._watchers: list[Callable[[str, int], None]] = []

    async def claim(self, stream_id: str) -> Claim:
        self.claims.append(stream_id)
        if stream_id in self.elsewhere:
            return HeldElsewhere(self.elsewhere[stream_id])
        if stream_id not in self.held:
            self.generations[stream_id] = self.generations.get(stream_id, 0) + 1
            self.held[stream_id] = self.generations[stream_id]
        return Owned(self.held[stream_id])

    async def release(self, stream_id: str, generation: int) -> None:
        self.released.append((stream_id, generation))
        if self.held.get(stream_id) == generation:
            del self.held[stream_id]

    def watch(self, on_lost: Callable[[str, int], None]) -> None:
        self._watchers.append(on_lost)

    async def ask_owner_to_release(self, owner_node: str, stream_id: str) -> None:
        self.asked.append((owner_node, stream_id))
        if self.hands_over:
            self.generations[stream_id] = self.generations.get(stream_id, 0) + 1
            del self.elsewhere[stream_id]

    def lose(self, stream_id: str, owner: str = "node-b") -> None:
        """The lease of ``stream_id`` was taken over by ``owner``: tell the watchers."""
        generation = self.held.pop(stream_id)
        self.elsewhere[stream_id] = owner
        for on_lost in self._watchers:
            on_lost(stream_id, generation)


class OpenSessions:
    """Sessions without an end, as :class:`workers.events.LeftOpen`: :attr:`open` maps a
    stream to its open sessions' lease generations (``None``: unknown)."""

    def __init__(self) -> None:
        self.open: dict[str, list[int | None]] = {}
        self.asked = 0
        """Times :meth:`streams_left_open` was asked."""

    async def streams_left_open(self) -> set[str]:
        self.asked += 1
        return {stream_id for stream_id, sessions in self.open.items() if sessions}

    async def close_left_open(self, stream_id: str, before_generation: int) -> int:
        sessions = self.open.get(stream_id, [])
        # The newer ownerships' sessions stay open; those of unknown generation are ended.
        kept: list[int | None] = [g for g in sessions if g is not None and g >= before_generation]
        self.open[stream_id] = kept
        return len(sessions) - len(kept)
