"""``liverelay serve`` under cProfile with a CPU-time clock, switched on and off by signals.

    python -m bench.cprofile_serve OUT.prof      (then: SIGUSR1 = start, SIGUSR2 = stop and dump)

Used by ``python -m bench.profile --mode cprofile``. Unlike a wall-clock sampler, the
``time.process_time`` clock charges a function only for CPU actually used: on a saturated
machine a thread that waits for a core (after waking ffmpeg, say) is not charged. Deterministic
profiling slows Python code down, more so for many small calls; read the shares, not the
absolute times.
"""

from __future__ import annotations

import cProfile
import signal
import sys
import time
from types import FrameType


def main() -> int:
    out = sys.argv[1]
    profiler = cProfile.Profile(time.process_time)
    state = {"on": False}

    def start(signum: int, frame: FrameType | None) -> None:
        if not state["on"]:
            state["on"] = True
            profiler.enable()

    def stop(signum: int, frame: FrameType | None) -> None:
        if state["on"]:
            profiler.disable()
            state["on"] = False
            profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    from api.cli import main as liverelay_main

    return liverelay_main(["serve"])


if __name__ == "__main__":
    raise SystemExit(main())
