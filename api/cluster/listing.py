"""``liverelay nodes``: the node registry as a table for people or as JSON for programs."""

from __future__ import annotations

from api.cluster.nodes import NodeInfo
from api.schemas.base import iso_timestamp

COLUMNS = (
    "NODE",
    "INTERNAL URL",
    "RTMP",
    "VERSION",
    "STARTED",
    "LAST SEEN",
    "LIVE",
    "LOAD",
    "STATE",
)


def node_json(node: NodeInfo) -> dict[str, object]:
    """One node as ``liverelay nodes --json`` prints it."""
    return {
        "id": node.id,
        "internalUrl": node.internal_url,
        "rtmpAddress": node.rtmp_address,
        "version": node.version,
        "startedAt": iso_timestamp(node.started_at),
        "lastSeenAt": iso_timestamp(node.last_seen_at),
        "stoppedAt": None if node.stopped_at is None else iso_timestamp(node.stopped_at),
        "drainingSince": None
        if node.draining_since is None
        else iso_timestamp(node.draining_since),
        "liveStreams": node.live_streams,
        "load": round(node.load, 3),
        "state": node.state,
    }


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def _cells(node: NodeInfo) -> tuple[str, ...]:
    return (
        node.id,
        node.internal_url,
        node.rtmp_address,
        node.version,
        node.started_at.strftime("%Y-%m-%d %H:%M:%SZ"),
        _ago(node.seen_seconds_ago),
        str(node.live_streams),
        f"{node.load * 100:.0f}%",
        node.state,
    )


def nodes_table(nodes: list[NodeInfo]) -> str:
    """An aligned text table, one node a line under a header (just the header if none)."""
    rows = [COLUMNS, *(_cells(node) for node in nodes)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
