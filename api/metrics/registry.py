"""Prometheus metrics (``GET /metrics``), in a registry owned by the app (no global registry).

Counters that change on every request are kept by prometheus-client; live state (streams,
outputs, RTMP connections) is read at scrape time from the objects that own it, so nothing is
counted twice and nothing goes stale.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, get_args

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from api.keys import METRICS
from api.schemas.current_session import OutputStateName, output_state_name
from ingest.server import RTMPServer
from workers.live_paths import LivePaths
from workers.thumbnail_cache import ThumbnailCache

if TYPE_CHECKING:  # loaded only where recordings go to object storage
    from workers.object_storage import S3RecordingStorage

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """The app's metrics registry and the instruments handlers update."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_seconds = Histogram(
            "liverelay_http_request_duration_seconds",
            "HTTP request latency by route template, method and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.loop_lag = Histogram(
            "liverelay_event_loop_lag_seconds",
            "How late the event loop ran a timer probe (LIVERELAY_LOOP_LAG_PROBE_SECONDS apart).",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self._http_children: dict[tuple[str, str, int], Histogram] = {}
        self.webhook_deliveries = Counter(
            "liverelay_webhook_deliveries",
            "Webhook delivery attempts by result (delivered, retry, failed).",
            ["result"],
            registry=self.registry,
        )

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request in :attr:`http_seconds`. The labelled child is looked up once per
        label set: ``labels()`` takes a lock and builds keys, on every playback request."""
        key = (method, route, status)
        child = self._http_children.get(key)
        if child is None:
            child = self._http_children[key] = self.http_seconds.labels(method, route, str(status))
        child.observe(seconds)

    def watch_media(self, paths: LivePaths, rtmp: RTMPServer) -> None:
        """Expose the live state of ``paths`` and ``rtmp`` at scrape time."""
        self.registry.register(LiveStateCollector(paths, rtmp))

    def watch_uploads(self, storage: S3RecordingStorage) -> None:
        """Expose the upload backlog of object storage at scrape time."""
        self.registry.register(UploadCollector(storage))

    def watch_thumbnails(self, cache: ThumbnailCache) -> None:
        """Expose how many thumbnails were decoded and how many served from the cache."""
        self.registry.register(ThumbnailCollector(cache))

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)


class ThumbnailCollector(Collector):
    """Reads the thumbnail cache's counters when Prometheus scrapes."""

    def __init__(self, cache: ThumbnailCache) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        made = CounterMetricFamily(
            "liverelay_thumbnails",
            "Thumbnail requests by how they were answered: decoded (a frame decoded and "
            "encoded) or cached (from the cache, or sharing another request's decode).",
            labels=["result"],
        )
        made.add_metric(["decoded"], self._cache.decoded)
        made.add_metric(["cached"], self._cache.from_cache)
        yield made
        yield GaugeMetricFamily(
            "liverelay_thumbnail_cache_bytes",
            "Bytes of thumbnails in the cache.",
            value=self._cache.bytes,
        )


class LiveStateCollector(Collector):
    """Reads streams, outputs and RTMP counters when Prometheus scrapes."""

    def __init__(self, paths: LivePaths, rtmp: RTMPServer) -> None:
        self._paths = paths
        self._rtmp = rtmp

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "liverelay_live_streams",
            "Streams with a publisher now.",
            value=self._paths.publishing(),
        )
        yield GaugeMetricFamily(
            "liverelay_rtmp_connections",
            "Open RTMP connections.",
            value=self._rtmp.connection_count,
        )
        rejects = CounterMetricFamily(
            "liverelay_rtmp_rejects", "RTMP connections closed early, by reason.", labels=["reason"]
        )
        for reason, count in sorted(self._rtmp.rejected.items()):
            rejects.add_metric([reason], count)
        yield rejects
        yield from self._stream_metrics()

    def _stream_metrics(self) -> Iterator[Metric]:
        now = time.monotonic()
        ingest = CounterMetricFamily(
            "liverelay_ingest_bytes", "Media bytes received per stream.", labels=["stream"]
        )
        bitrate = GaugeMetricFamily(
            "liverelay_ingest_bitrate_kbps",
            "Ingest bitrate over the last seconds per stream.",
            labels=["stream"],
        )
        state = GaugeMetricFamily(
            "liverelay_output_state",
            "1 for the current state of each output.",
            labels=["stream", "output", "state"],
        )
        restarts = CounterMetricFamily(
            "liverelay_output_restarts",
            "Restarts of each output by its supervisor.",
            labels=["stream", "output"],
        )
        dropped = CounterMetricFamily(
            "liverelay_output_dropped_frames",
            "Frames an output dropped because it lagged.",
            labels=["stream", "output"],
        )
        speed = GaugeMetricFamily(
            "liverelay_transcode_speed",
            "ffmpeg's speed per stream transcoding a ladder (below 1: falling behind).",
            labels=["stream"],
        )
        rungs_dropped = CounterMetricFamily(
            "liverelay_renditions_dropped",
            "Renditions dropped per stream because the transcoding could not keep up or their "
            "output could not be read.",
            labels=["stream"],
        )
        for path in self._paths.paths():
            stream = path.stream_id
            outputs = path.outputs
            if outputs.transcode_speed is not None:
                speed.add_metric([stream], outputs.transcode_speed)
            if outputs.transcode_speed is not None or outputs.dropped_renditions:
                rungs_dropped.add_metric([stream], len(outputs.dropped_renditions))
            ingest.add_metric([stream], path.hub.bytes_in)
            bitrate.add_metric([stream], path.hub.bitrate.kbps(now))
            for status, dropped_frames in path.output_statuses():
                output = status.name.rsplit("/", 1)[-1]
                shown = output_state_name(status.state)
                for candidate in get_args(OutputStateName):
                    state.add_metric(
                        [stream, output, candidate], 1.0 if shown == candidate else 0.0
                    )
                restarts.add_metric([stream, output], status.restarts)
                dropped.add_metric([stream, output], dropped_frames)
        yield from (ingest, bitrate, state, restarts, dropped, speed, rungs_dropped)


class UploadCollector(Collector):
    """Reads the object-storage upload backlog when Prometheus scrapes."""

    def __init__(self, storage: S3RecordingStorage) -> None:
        self._storage = storage

    def collect(self) -> Iterator[Metric]:
        storage = self._storage
        yield GaugeMetricFamily(
            "liverelay_upload_backlog_bytes",
            "Bytes of recorded segments waiting for their upload to object storage.",
            value=storage.waiting_bytes,
        )
        yield GaugeMetricFamily(
            "liverelay_upload_backlog_segments",
            "Recorded segments waiting for their upload to object storage.",
            value=storage.waiting_segments,
        )
        yield CounterMetricFamily(
            "liverelay_upload_failures",
            "Uploads to object storage that failed (each is retried).",
            value=storage.upload_failures,
        )
        yield CounterMetricFamily(
            "liverelay_upload_recordings_failed",
            "Recordings object storage gave up on (backlog bound reached, another writer).",
            value=storage.recordings_failed,
        )


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus exposition format, unauthenticated."""
    body = request.app[METRICS].render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
