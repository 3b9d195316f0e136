"""Start-up recovery of the live paths: what an unclean end left open is closed stream by
stream under the stream's lease; a stream another node holds is left to it (and returned, to
be tried again), and a stream live here keeps its own session."""

from __future__ import annotations

from pathlib import Path

from api.live.media_context import sweep_once
from config import Settings
from ingest.authorizer import PublishGrant
from tests.fakes import FakeOwnership, KeyTable, OpenSessions
from workers.ffmpeg_binary import resolve_ffmpeg
from workers.live_paths import LivePaths

MINE, ELSEWHERE, LIVE = "a" * 24, "b" * 24, "c" * 24


class Publisher:
    client_address = "203.0.113.7:50000"

    def disconnect(self, reason: str) -> None:
        raise AssertionError(f"disconnected ({reason})")


async def test_recovery_leaves_streams_held_elsewhere_and_the_live_session_here(
    tmp_path: Path,
) -> None:
    ownership, keys, sessions = FakeOwnership(), KeyTable(), OpenSessions()
    settings = Settings(data_dir=tmp_path)
    paths = LivePaths(
        settings, ffmpeg=resolve_ffmpeg(settings), authorizer=keys, ownership=ownership
    )
    try:
        keys.grants["key"] = PublishGrant(LIVE)
        ownership.generations[LIVE] = 2
        live = await paths.admit("key", Publisher())
        assert live.lease_generation == 3
        ownership.elsewhere[ELSEWHERE] = "node-b"
        ownership.generations[ELSEWHERE] = 1  # node-b holds it at 1
        ownership.generations[MINE] = 4  # its last owner's: a new claim gets 5
        sessions.open = {MINE: [None, 4], ELSEWHERE: [1], LIVE: [2, 3]}
        ownership.claims.clear()

        assert await paths.recover(sessions) == {ELSEWHERE}
        assert sessions.open == {MINE: [], ELSEWHERE: [1], LIVE: [3]}
        assert sorted(ownership.claims) == [MINE, ELSEWHERE]  # not the stream live here
        assert ownership.released == [(MINE, 5)] and ownership.held == {LIVE: 3}

        del ownership.elsewhere[ELSEWHERE]  # its owner released it
        assert await paths.recover(sessions, only={ELSEWHERE}) == set()
        assert sessions.open[ELSEWHERE] == [] and ownership.held == {LIVE: 3}
    finally:
        await paths.close()


class NothingLeft(OpenSessions):
    """A sweep of :class:`api.live.leftovers.LeftoverSessions` that finds nothing to close."""

    async def sweep(self, left: set[str]) -> set[str]:
        return set()


async def test_a_periodic_sweep_with_nothing_to_close_asks_nothing_more(tmp_path: Path) -> None:
    """The sweep runs every lease period on every node, nearly always with nothing to do."""
    sessions = NothingLeft()
    settings = Settings(data_dir=tmp_path)
    paths = LivePaths(
        settings, ffmpeg=resolve_ffmpeg(settings), authorizer=KeyTable(), ownership=FakeOwnership()
    )
    try:
        sessions.open = {MINE: [4]}
        assert await sweep_once(paths, sessions, set()) == set()  # type: ignore[arg-type]
        assert sessions.asked == 0
        assert sessions.open == {MINE: [4]}
    finally:
        await paths.close()
