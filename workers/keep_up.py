"""Whether a ladder's transcoding keeps up with the publish, from ffmpeg's ``speed=`` (media
seconds processed per wall-clock second, in its ``-progress`` blocks). Pure: speeds and the
time passed in.

An encoder that cannot keep up makes the whole ffmpeg fall behind, and with it the source
rendition (one process reads the publish for every rendition): so when the speed stays below
:data:`SLOW_SPEED` for :data:`SLOW_SECONDS`, the output drops its most expensive rung (the top
one) and starts ffmpeg again without it; the lower rungs and the source go on.
"""

from __future__ import annotations

SLOW_SPEED = 0.97
"""Below this speed ffmpeg is falling behind (a little under 1.0: the speed of a live input
wobbles around 1.0x)."""
SLOW_SECONDS = 10.0
"""How long the speed must stay below :data:`SLOW_SPEED` before a rung is dropped."""
GRACE_SECONDS = 8.0
"""After ffmpeg starts, its speed is not judged for this long (the hub's replayed GOP comes
all at once, and the encoders' start-up is slow)."""


def parse_speed(value: str | None) -> float | None:
    """``0.985x`` -> 0.985; ``N/A``, a missing or a malformed value -> ``None``."""
    if not value:
        return None
    try:
        speed = float(value.strip().removesuffix("x"))
    except ValueError:
        return None
    return speed if speed >= 0 else None


class KeepUpWatch:
    """Judges one ffmpeg run's speeds: :meth:`observe` says when it fell behind for good."""

    def __init__(
        self,
        started_at: float,
        *,
        slow_speed: float | None = None,
        slow_seconds: float | None = None,
        grace_seconds: float | None = None,
    ) -> None:
        """Unless given, the limits are the module's :data:`SLOW_SPEED`, :data:`SLOW_SECONDS`
        and :data:`GRACE_SECONDS` as they are when the run starts."""
        grace = GRACE_SECONDS if grace_seconds is None else grace_seconds
        self._judged_from = started_at + grace
        self._slow_speed = SLOW_SPEED if slow_speed is None else slow_speed
        self._slow_seconds = SLOW_SECONDS if slow_seconds is None else slow_seconds
        self._slow_since: float | None = None
        self.speed: float | None = None
        """The last speed ffmpeg reported."""
        self.fell_behind = False
        """The run was found too slow (said once by :meth:`observe`)."""

    @property
    def slow(self) -> bool:
        """Whether the last speed (once judged) is below the slow speed."""
        return self._slow_since is not None

    def observe(self, speed: float | None, now: float) -> bool:
        """Take one reported speed; ``True`` the one time the run has been slow for long
        enough (the caller then drops a rung)."""
        if speed is None:
            return False
        self.speed = speed
        if now < self._judged_from or speed >= self._slow_speed:
            self._slow_since = None
            return False
        if self._slow_since is None:
            self._slow_since = now
        if self.fell_behind or now - self._slow_since < self._slow_seconds:
            return False
        self.fell_behind = True
        return True


class ProgressBlocks:
    """ffmpeg's ``-progress`` output, from any chunking, as complete ``key=value`` blocks (each
    ends with ``progress=continue`` or ``progress=end``); lines are bounded."""

    MAX_LINE = 4096

    def __init__(self) -> None:
        self._pending = b""
        self._block: dict[str, str] = {}

    def feed(self, chunk: bytes) -> list[dict[str, str]]:
        """The blocks ``chunk`` completes."""
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        if len(self._pending) > self.MAX_LINE:
            self._pending = b""
        blocks = []
        for raw in lines:
            key, sep, value = raw[: self.MAX_LINE].decode("utf-8", "replace").strip().partition("=")
            if not sep:
                continue
            self._block[key] = value
            if key == "progress":
                blocks.append(self._block)
                self._block = {}
        return blocks
