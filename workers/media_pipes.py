"""Extra media outputs of a child process: one OS pipe each, its write end passed on to the
child at its own descriptor number (``pipe:<n>`` in ffmpeg's command), its read end read by
:class:`workers.process.FFmpegProcess` into a sink, like stdout's media."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class MediaPipe:
    """One pipe from the child to a sink."""

    read_fd: int
    write_fd: int
    """The descriptor the child writes to (the same number in the child: ``pass_fds``)."""
    sink: Callable[[bytes], None]
    """Told each chunk read, in order."""

    @classmethod
    def open(cls, sink: Callable[[bytes], None]) -> MediaPipe:
        """A new pipe (both ends close-on-exec: only ``pass_fds`` hands the write end on)."""
        read_fd, write_fd = os.pipe()
        return cls(read_fd, write_fd, sink)

    def close_write(self) -> None:
        """Close the parent's copy of the write end (after the child started, or instead):
        the reader then sees EOF when the child exits."""
        if self.write_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.write_fd)
            self.write_fd = -1

    def close_read(self) -> None:
        """Close the read end when it was never handed to a reader (the child did not start)."""
        if self.read_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.read_fd)
            self.read_fd = -1
