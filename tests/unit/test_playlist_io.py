"""The live playlist's file work: off the event loop, in order, never overlapping, bounded."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from workers import playlist as playlist_module
from workers.m3u8 import Segment, parse_media_playlist
from workers.playlist import LivePlaylist

T = TypeVar("T")

HEADER = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"


def ffmpeg_lists(private: Path, *names: str) -> None:
    """Cut the last of ``names`` and list ``names`` in ffmpeg's private playlist, the way
    ffmpeg does (the segment first, then the playlist replaced by a rename)."""
    (private.parent / names[-1]).write_bytes(b"\x47" * 188)
    tmp = private.with_name(private.name + ".tmp")
    tmp.write_text(HEADER + "".join(f"#EXTINF:2.000000,\n{name}\n" for name in names))
    tmp.replace(private)


def segment_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.ts"))


class CountingExecutor(ThreadPoolExecutor):
    """The loop's threads for ``asyncio.to_thread``, counting the work handed to them."""

    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.submitted = 0

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


class GatedWrites:
    """Stands in for ``write_atomically``: records the thread and the overlap of each write,
    and blocks while the gate is closed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.real = playlist_module.write_atomically
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Semaphore(0)
        self.threads: list[int] = []
        self.running = 0
        self.most_at_once = 0
        self.lock = threading.Lock()
        monkeypatch.setattr(playlist_module, "write_atomically", self)

    def __call__(self, path: Path, text: str) -> None:
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.threads.append(threading.get_ident())
        self.started.release()
        try:
            assert self.gate.wait(10)
            self.real(path, text)
        finally:
            with self.lock:
                self.running -= 1

    async def wait_started(self) -> None:
        assert await asyncio.to_thread(self.started.acquire, True, 10)


async def test_refresh_does_the_file_work_in_threads_and_callbacks_on_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = GatedWrites(monkeypatch)
    unlinks: list[tuple[str, int]] = []
    real_unlink = Path.unlink

    def recording_unlink(self: Path, missing_ok: bool = False) -> None:
        unlinks.append((self.name, threading.get_ident()))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", recording_unlink)
    callbacks: list[tuple[str, int]] = []
    private = tmp_path / ".ffmpeg-a.m3u8"
    playlist = LivePlaylist(
        tmp_path,
        list_size=2,
        segment_seconds=2,
        on_segment=lambda path, seg: callbacks.append((seg.name, threading.get_ident())),
    )
    loop_thread = threading.get_ident()
    names = [f"a-{i}.ts" for i in range(6)]
    for i in range(len(names)):
        ffmpeg_lists(private, *names[max(0, i - 2) : i + 1])
        assert await playlist.refresh(private) == 1
        assert await playlist.refresh(private) == 0  # unchanged: nothing to do
    text = playlist.path.read_text()
    assert [s.name for s in parse_media_playlist(text)] == ["a-4.ts", "a-5.ts"]
    assert "#EXT-X-MEDIA-SEQUENCE:4" in text
    assert segment_files(tmp_path) == ["a-2.ts", "a-3.ts", "a-4.ts", "a-5.ts"]
    assert [name for name, _ in callbacks] == names
    assert {thread for _, thread in callbacks} == {loop_thread}
    assert len(writes.threads) == 6 and loop_thread not in writes.threads
    assert [name for name, _ in unlinks] == ["a-0.ts", "a-1.ts"]
    assert loop_thread not in {thread for _, thread in unlinks}

    await playlist.refresh(private, last=True)
    assert not private.exists()
    await playlist.close()
    assert playlist.path.read_text().endswith("#EXT-X-ENDLIST\n")


async def test_the_loop_runs_while_a_write_is_slow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = GatedWrites(monkeypatch)
    writes.gate.clear()
    private = tmp_path / ".ffmpeg-a.m3u8"
    ffmpeg_lists(private, "a-0.ts")
    playlist = LivePlaylist(tmp_path, list_size=3, segment_seconds=2)
    refresh = asyncio.create_task(playlist.refresh(private))
    await writes.wait_started()
    # The loop resumed this test and runs other work while the write is still held in its
    # thread (a write on the loop would hold the loop until the write gave up waiting).
    assert await asyncio.create_task(asyncio.sleep(0, result="ran")) == "ran"
    assert writes.running == 1 and not refresh.done()
    writes.gate.set()
    assert await refresh == 1
    assert "a-0.ts" in playlist.path.read_text()


async def test_a_cancelled_refresh_does_not_overlap_the_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The poller is cancelled while its write runs; the final write must wait for it (both
    go through the same temporary file) and land last."""
    writes = GatedWrites(monkeypatch)
    writes.gate.clear()
    private = tmp_path / ".ffmpeg-a.m3u8"
    ffmpeg_lists(private, "a-0.ts")
    playlist = LivePlaylist(tmp_path, list_size=3, segment_seconds=2)
    poller = asyncio.create_task(playlist.refresh(private))
    await writes.wait_started()
    poller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await poller
    ffmpeg_lists(private, "a-0.ts", "a-1.ts")
    threads = CountingExecutor()
    asyncio.get_running_loop().set_default_executor(threads)
    final = asyncio.create_task(playlist.refresh(private, last=True))
    closing = asyncio.create_task(playlist.close())
    for _ in range(5):  # turns of the loop: both tasks and the work they queue run their part
        await asyncio.sleep(0)
    assert threads.submitted == 0, "file work was started while the cancelled write still runs"
    assert writes.running == 1 and not final.done() and not closing.done()
    writes.gate.set()
    assert await final == 1
    await closing
    assert writes.most_at_once == 1
    text = playlist.path.read_text()
    assert [s.name for s in parse_media_playlist(text)] == ["a-0.ts", "a-1.ts"]
    assert text.endswith("#EXT-X-ENDLIST\n")
    assert not private.exists()


async def test_waiting_for_a_hung_write_is_bounded_and_the_work_still_lands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    writes = GatedWrites(monkeypatch)
    writes.gate.clear()
    playlist = LivePlaylist(tmp_path, list_size=3, segment_seconds=2)
    playlist.add(Segment("a-0.ts", 2.0))
    with caplog.at_level(logging.WARNING, logger="workers.playlist"):
        await playlist.close(timeout=0.1)
    # close() returned while the write is still held at the gate: it did not wait for it.
    assert writes.running == 1 and not writes.gate.is_set()
    assert "not waiting" in caplog.text
    assert not playlist.path.exists()
    writes.gate.set()
    await playlist.flush()  # waits for the work in flight: nothing new to write
    assert playlist.path.read_text().endswith("#EXT-X-ENDLIST\n")


async def test_a_failed_write_is_retried_before_retired_segments_are_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    playlist = LivePlaylist(tmp_path, list_size=1, segment_seconds=2)
    for name in ("a-0.ts", "a-1.ts", "a-2.ts"):
        (tmp_path / name).write_bytes(b"\x47" * 188)
        playlist.add(Segment(name, 2.0))

    def full_disk(path: Path, text: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(playlist_module, "write_atomically", full_disk)
    with pytest.raises(OSError):
        await playlist.flush()
    assert (tmp_path / "a-0.ts").exists()  # still listed by the playlist on disk, if any
    monkeypatch.undo()
    await playlist.flush()
    assert [s.name for s in parse_media_playlist(playlist.path.read_text())] == ["a-2.ts"]
    assert segment_files(tmp_path) == ["a-1.ts", "a-2.ts"]
