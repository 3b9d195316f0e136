"""Soak test: one liverelay node under steady publish, playback and API load for a fixed time.

    python -m bench.soak [--publishers 20] [--minutes 10]

Starts ``liverelay serve`` in a temporary data directory (SQLite, 2 s segments, loopback ports),
creates an API key (``liverelay apikey create --name soak``) and one stream per publisher, then
pushes N real-time publishers (``ffmpeg -re -stream_loop -1 -i SRC -c copy -f flv URL``, the
720p30 ~3 Mbit/s clip of :func:`bench.common.source_clip`) and a steady API load (GET list,
GET one, PATCH name). Every ``--sample-seconds`` it records:

- RSS and PSS of the service's process tree (the Python process and its ffmpeg children, not the
  publishers) and of the Python process alone; CPU of both; machine busy %;
- open file descriptors and threads of the Python process;
- its children, and any zombie (state Z) among its descendants;
- ``/metrics`` (live streams, RTMP connections, rejects, output restarts, dropped frames);
- whether every stream's playlist advanced since the previous sample, and whether its newest
  segment downloads as MPEG-TS.

``/healthz`` is timed once a second from a separate thread (its latency is the event-loop lag
seen from outside).

At the end the publishers stop; within ``--drain-seconds`` no ffmpeg child of the service may
remain and every playlist must be closed. The service then gets SIGTERM and must exit 0 within
``--term-seconds``; no ffmpeg mentioning the data directory may be left anywhere (orphans).

Errors (must be zero): API non-2xx or failed requests, playlists that stopped advancing or never
started, segments that did not download, publishers that died, /healthz failures, zombies,
ffmpeg children left after the drain, orphans, a non-zero or late exit.

Results: bench/results/soak-<time>.json and a summary on stdout. Exit status 0 when there were
no errors. Loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bench.common import write_result
from bench.soak_report import summary_text
from bench.soak_run import soak

MAX_PUBLISHERS = 200
MAX_MINUTES = 240


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line of ``python -m bench.soak``, with its bounds checked."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--publishers", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--sample-seconds", type=float, default=10)
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=60,
        help="memory growth is measured from the first sample after this (at most 1/4 of the run)",
    )
    parser.add_argument("--api-rps", type=float, default=5, help="API requests per second")
    parser.add_argument("--drain-seconds", type=float, default=15)
    parser.add_argument("--term-seconds", type=float, default=30)
    parser.add_argument(
        "--ref", default=None, help="run liverelay from this git commit instead of the work tree"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not 1 <= args.publishers <= MAX_PUBLISHERS:
        raise SystemExit(f"--publishers must be 1..{MAX_PUBLISHERS}")
    if not 0.5 <= args.minutes <= MAX_MINUTES:
        raise SystemExit(f"--minutes must be 0.5..{MAX_MINUTES}")
    if not 2 <= args.sample_seconds <= 300 or not 0 < args.api_rps <= 100:
        raise SystemExit("--sample-seconds must be 2..300 and --api-rps 0..100")
    if not 1 <= args.drain_seconds <= 300 or not 1 <= args.term_seconds <= 300:
        raise SystemExit("--drain-seconds and --term-seconds must be 1..300")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the soak, write the JSON result, print the summary; 0 when there were no errors."""
    args = parse_args(argv)
    result = asyncio.run(soak(args))
    out = write_result(result, args.out, "soak")
    print()
    print(summary_text(result))
    print(f"\nwrote {out}")
    return 0 if result.get("errors", {}).get("total", 1) == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
