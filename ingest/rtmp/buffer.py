"""The receive buffer: bytes the parser has not consumed yet (commit/rollback by offset)."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ReceiveBuffer"]

_COMPACT_THRESHOLD = 64 * 1024
"""Consumed bytes kept at the front before the buffer is compacted."""


class ReceiveBuffer:
    """Holds received bytes until a parser consumes them.

    A parser is a function ``(view, offset) -> offset``: it reads from ``view`` starting at
    ``offset`` and returns where it stopped; everything before that point is committed
    (dropped), everything after it is kept for the next call (a partial header waits for more
    bytes). When nothing is pending the incoming bytes are parsed in place, so the common case
    copies only the leftover tail. Compaction happens rarely, so consuming a large buffer
    piece by piece stays linear.
    """

    def __init__(self) -> None:
        self._data = bytearray()
        self._start = 0

    def __len__(self) -> int:
        return len(self._data) - self._start

    def parse(
        self, data: bytes | bytearray | memoryview, parser: Callable[[memoryview, int], int]
    ) -> None:
        """Run ``parser`` over the pending bytes followed by ``data``; keep what it leaves."""
        if not len(self):
            with _byte_view(data) as view:
                pos = parser(view, 0)
                self._data.clear()
                self._start = 0
                self._data += view[pos:]
            return
        self._compact()
        self._data += data
        with memoryview(self._data) as view:
            pos = parser(view, self._start)
        self._start = pos

    def _compact(self) -> None:
        if self._start >= _COMPACT_THRESHOLD and self._start * 2 >= len(self._data):
            del self._data[: self._start]
            self._start = 0


def _byte_view(data: bytes | bytearray | memoryview) -> memoryview:
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view
