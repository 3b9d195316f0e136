"""Which streams were ended or changed while publish key checks were running (see
:mod:`workers.live_paths`: an admission whose stream changed since its check began checks the
key again under the stream's lock)."""

from __future__ import annotations

from collections import Counter


class ChangeMarks:
    """Which streams were ended or changed while key checks were running. Marks are kept only
    while a check that began before them runs, so they never outnumber the streams."""

    def __init__(self) -> None:
        self._count = 0
        self._last: dict[str, int] = {}
        self._running: Counter[int] = Counter()

    def begin(self) -> int:
        """A key check begins; returns its mark."""
        self._running[self._count] += 1
        return self._count

    def changed(self, stream_id: str) -> None:
        """``stream_id`` was ended or changed (its new state is committed)."""
        self._count += 1
        if self._running:
            self._last[stream_id] = self._count

    def changed_since(self, stream_id: str, mark: int) -> bool:
        """Whether ``stream_id`` changed after the check of ``mark`` began."""
        return self._last.get(stream_id, -1) > mark

    def done(self, mark: int) -> None:
        """The check of ``mark`` is over."""
        self._running[mark] -= 1
        if self._running[mark] <= 0:
            del self._running[mark]
        if not self._running:
            self._last.clear()
