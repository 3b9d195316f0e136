"""The receive buffer: bytes the parser has not consumed yet (commit/rollback by offset)."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ReceiveBuffer"]


class ReceiveBuffer:
    """Holds received bytes until a parser consumes them.

    A parser is a function ``(view, offset) -> offset``: it reads from ``view`` starting at
    ``offset`` and returns where it stopped; everything before that point is committed
    (dropped), everything after it is kept for the next call (a partial header waits for more
    bytes). When nothing is pending the incoming bytes are parsed in place, so the common case
    copies only the leftover tail.

    Consumed bytes are never kept between calls, so ``len(buffer)`` is the memory held: at
    most the one incomplete unit the parser is waiting for. Keeping only the tail stays
    linear: the parser consumes every complete unit, so a tail left after some progress lies
    within the bytes just received.
    """

    def __init__(self) -> None:
        self._data = bytearray()

    def __len__(self) -> int:
        return len(self._data)

    def parse(
        self, data: bytes | bytearray | memoryview, parser: Callable[[memoryview, int], int]
    ) -> None:
        """Run ``parser`` over the pending bytes followed by ``data``; keep what it leaves."""
        if not self._data:
            with _byte_view(data) as view:
                pos = parser(view, 0)
                self._data = bytearray(view[pos:])
            return
        self._data += data
        with memoryview(self._data) as view:
            pos = parser(view, 0)
            tail = bytearray(view[pos:]) if pos else None
        if tail is not None:
            self._data = tail  # a fresh, right-sized copy: the consumed bytes are freed


def _byte_view(data: bytes | bytearray | memoryview) -> memoryview:
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view
