"""Live paths continuing a session an earlier owner of the stream began, and handing one over:
what the registry asks of :class:`~workers.events.SessionResume` and what the path does with
the answer (the database side is tested in ``tests/api/test_session_fencing.py``, both nodes
together in ``tests/e2e/test_cluster_resume.py``)."""

from __future__ import annotations

from pathlib import Path

from config import Settings
from ingest.authorizer import PublishGrant
from ingest.live import EndReason
from tests.fakes import KeyTable
from tests.unit.test_live_paths import STREAM, FakePublisher, fake_ffmpeg
from workers.events import NoStreamEvents, Resumed, SessionInfo
from workers.live_paths import LivePaths

EARLIER = Resumed("e" * 24, 1_000.0, "203.0.113.9:1", 3, None)


class Resumes:
    """Answers every resume with :attr:`answer`; records the calls."""

    shared = False

    def __init__(self, answer: Resumed | None) -> None:
        self.answer = answer
        self.asked: list[tuple[str, int, float]] = []
        self.closed: list[tuple[str, int]] = []

    async def resume(
        self, stream_id: str, generation: int, *, window: float, client_address: str
    ) -> Resumed | None:
        self.asked.append((stream_id, generation, window))
        return self.answer

    async def close_older(self, stream_id: str, generation: int) -> int:
        self.closed.append((stream_id, generation))
        return 0


class Reported(NoStreamEvents):
    def __init__(self) -> None:
        self.reports: list[str] = []

    async def session_started(self, info: SessionInfo) -> None:
        self.reports.append(f"started:{info.session_id}")

    async def session_ended(
        self, info: SessionInfo, *, ended_at: float, reason: EndReason, bytes_in: int
    ) -> None:
        self.reports.append(f"ended:{reason}")


async def registry(
    tmp_path: Path, answer: Resumed | None
) -> tuple[LivePaths, KeyTable, Resumes, Reported]:
    keys, resumes, events = KeyTable(), Resumes(answer), Reported()
    settings = Settings(data_dir=tmp_path, output_backoff_max_seconds=1)
    paths = LivePaths(
        settings, ffmpeg=fake_ffmpeg(tmp_path), authorizer=keys, events=events, resume=resumes
    )
    return paths, keys, resumes, events


async def test_a_session_an_earlier_owner_began_continues_with_its_id_and_start(
    tmp_path: Path,
) -> None:
    paths, keys, resumes, events = await registry(tmp_path, EARLIER)
    try:
        keys.grants["key"] = PublishGrant(STREAM, reconnect_window_seconds=30)
        path = await paths.admit("key", FakePublisher("198.51.100.1:1"))
        assert path.resumed and path.reconnects == 3
        assert (path.info.session_id, path.info.started_at) == (EARLIER.session_id, 1_000.0)
        assert path.info.lease_generation == 1 and path.info.client_address == "198.51.100.1:1"
        assert resumes.asked == [(STREAM, 1, 30)]
        await paths.end(STREAM, "completed")
        assert events.reports == ["ended:completed"]  # its start was recorded by its owner
        assert resumes.closed == [(STREAM, 1)]  # what older ownerships left is closed
    finally:
        await paths.close()


async def test_without_a_session_to_continue_a_new_one_begins(tmp_path: Path) -> None:
    paths, keys, resumes, events = await registry(tmp_path, None)
    try:
        keys.grants["key"] = PublishGrant(STREAM)
        path = await paths.admit("key", FakePublisher())
        assert not path.resumed and path.info.session_id != EARLIER.session_id
        await paths.end(STREAM, "completed")
        assert events.reports == [f"started:{path.info.session_id}", "ended:completed"]
        assert resumes.closed == [(STREAM, 1)]
    finally:
        await paths.close()


async def test_a_replaced_session_is_handed_over_only_with_a_reconnect_window(
    tmp_path: Path,
) -> None:
    paths, keys, _, events = await registry(tmp_path, None)
    try:
        for window, reports in ((60, []), (0, ["ended:replaced"])):
            events.reports.clear()
            keys.grants["key"] = PublishGrant(STREAM, reconnect_window_seconds=window)
            publisher = FakePublisher()
            path = await paths.admit("key", publisher)
            assert await paths.end(STREAM, "replaced")
            assert publisher.ended == ["replaced"] and path.ended.is_set()
            assert [r for r in events.reports if not r.startswith("started")] == reports
    finally:
        await paths.close()
