"""Watchers on their own threads, so the bench's event loop does not skew them: /healthz timed
once a second with a blocking client, and the bench process's own wake-up lateness (a starved
machine, as opposed to a blocked service)."""

from __future__ import annotations

import http.client
import math
import threading
import time

HEALTHZ_INTERVAL = 1.0
HEALTHZ_TIMEOUT = 5.0


class HealthProber(threading.Thread):
    """GETs /healthz every :data:`HEALTHZ_INTERVAL` s until stopped or ``deadline``."""

    def __init__(self, port: int, deadline: float) -> None:
        super().__init__(name="healthz-prober", daemon=True)
        self.port = port
        self.deadline = deadline
        self.stop_event = threading.Event()
        self.samples: list[tuple[float, float | None, str]] = []
        """(monotonic time, latency ms or None, "200" / error)."""

    def probe(self) -> tuple[float | None, str]:
        """One GET /healthz: (latency ms or None, status or error name)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HEALTHZ_TIMEOUT)
        started = time.perf_counter()
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
            latency = (time.perf_counter() - started) * 1000
            return latency, str(response.status)
        except (OSError, http.client.HTTPException) as exc:
            return None, type(exc).__name__
        finally:
            conn.close()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop_event.is_set() and time.monotonic() < self.deadline:
            latency, outcome = self.probe()
            self.samples.append((time.monotonic(), latency, outcome))
            next_at += HEALTHZ_INTERVAL
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))

    def failures(self) -> list[tuple[float, str]]:
        """(time, outcome) of every probe that failed or did not answer 200."""
        return [(t, o) for t, lat, o in self.samples if lat is None or o != "200"]

    def latencies(self, start: float = 0.0, end: float = math.inf) -> list[float]:
        """Latencies (ms) of the probes that answered between ``start`` and ``end``."""
        return [lat for t, lat, o in self.samples if lat is not None and start <= t <= end]


class JitterProbe(threading.Thread):
    """Sleeps 10 ms at a time in this (bench) process and records how late it wakes. Late
    wake-ups at the moments /healthz is slow mean the machine was starved (other processes, CPU
    steal), not that the service's event loop was blocked."""

    def __init__(self, deadline: float) -> None:
        super().__init__(name="jitter-probe", daemon=True)
        self.deadline = deadline
        self.stop_event = threading.Event()
        self.window_max_ms = 0.0
        self.late: list[tuple[float, float]] = []
        """(monotonic time, ms late) of every wake-up more than 50 ms late."""

    def run(self) -> None:
        while not self.stop_event.is_set() and time.monotonic() < self.deadline:
            before = time.monotonic()
            time.sleep(0.01)
            late = (time.monotonic() - before - 0.01) * 1000
            self.window_max_ms = max(self.window_max_ms, late)
            if late > 50 and len(self.late) < 10_000:
                self.late.append((time.monotonic(), late))

    def take_window_max(self) -> float:
        """The largest lateness (ms) since the previous call."""
        value, self.window_max_ms = self.window_max_ms, 0.0
        return value
