"""Bodies of ``GET /v1/livestreams/{id}/sessions``: the history of a stream's live sessions,
from the ``live_sessions`` rows the media side writes."""

from __future__ import annotations

from pydantic import Field

from api.models import LiveSession
from api.schemas.base import OutputModel, iso_timestamp
from api.schemas.livestreams import PageInfo


class SessionOutput(OutputModel):
    """One live session of a stream: from its first publish to its end (a publisher that
    reconnects inside the window stays in the same session)."""

    id: str = Field(description="24-hex id of the session.")
    started_at: str = Field(json_schema_extra={"format": "date-time"})
    ended_at: str | None = Field(
        json_schema_extra={"format": "date-time"}, description="Null while live."
    )
    duration: float | None = Field(description="Seconds from start to end; null while live.")
    end_reason: str | None = Field(
        description="`publisher_left`, `completed`, `disabled`, `reset`, `timed_out`, "
        "`deleted`, `max_duration`, `shutdown`, `draining` (the node was drained: the "
        "publisher was asked to publish again, to another node; in a cluster a session with "
        "a reconnect window continues on that node instead, unless it was recorded on the "
        "drained node's disk), `error`, `lease_lost` (the "
        "node lost the stream's ownership lease: another node took it over, or the database "
        "was unreachable too long) or `replaced` (a newer publish on another node took the "
        "stream over; only without a reconnect window, otherwise the session continues on "
        "that node); null while live."
    )
    client_address: str = Field(description="`host:port` of the publisher that began it.")
    reconnects: int = Field(
        description="Publishers that came back inside the window (also on another node)."
    )
    bytes_in: int = Field(
        description="Media bytes received (known once it ended; after a change of node, "
        "those the last node received)."
    )


class SessionPage(OutputModel):
    """Body of ``GET /v1/livestreams/{id}/sessions``: newest first."""

    page_info: PageInfo
    data: list[SessionOutput]


def session_output(row: LiveSession) -> SessionOutput:
    """A row of ``live_sessions`` in responses."""
    ended = row.ended_at
    return SessionOutput(
        id=row.id,
        started_at=iso_timestamp(row.started_at),
        ended_at=iso_timestamp(ended) if ended is not None else None,
        duration=round((ended - row.started_at).total_seconds(), 3) if ended else None,
        end_reason=row.end_reason,
        client_address=row.client_address,
        reconnects=row.reconnects,
        bytes_in=row.bytes_in,
    )
