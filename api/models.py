"""SQLAlchemy models of the durable state: accounts, live streams, their restream targets and
their recordings.

Relationships are ``lazy="raise"``: every query says what it loads, nothing is fetched implicitly
(which would fail under asyncio anyway).
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

DEFAULT_RECONNECT_WINDOW_SECONDS = 60
DEFAULT_MAX_DURATION_SECONDS = 12 * 3600
DEFAULT_LATENCY_MODE: Final = "low"
"""How a new stream is packaged for playback: ``standard`` (MPEG-TS HLS) or ``low``
(low-latency HLS, fMP4 parts)."""
DEFAULT_PLAYBACK_POLICY = "public"
"""Who may play a new stream: ``public`` (anyone with its id) or ``signed`` (a playback token)."""
DEFAULT_RENDITIONS = "source"
"""A new stream's ladder, as stored: the source rendition only."""


def new_object_id() -> str:
    """A 24-hex id shaped like a MongoDB ObjectId: 4 bytes of Unix time, then 8 random bytes."""
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{secrets.token_hex(8)}"


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    PostgreSQL keeps ``timestamptz``; SQLite has no time zones, so the value is stored as naive
    UTC there and tagged as UTC again when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Normalise to UTC (naive for SQLite); naive input is refused."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of liverelay's tables; constraint names match the migrations."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s",
        }
    )


class Account(Base):
    """An API user: owns live streams, authenticates with JWTs signed by ``secret``."""

    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_object_id)
    name: Mapped[str] = mapped_column(String(256))
    apikey: Mapped[str] = mapped_column(String(64), unique=True)
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class LiveStream(Base):
    """A live stream: a secret ``stream_key`` to publish with and a public ``id`` to play."""

    __tablename__ = "live_streams"
    __table_args__ = (Index("ix_live_streams_account_created", "account_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_object_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    name: Mapped[str] = mapped_column(String(256))
    record: Mapped[bool] = mapped_column(Boolean, default=False)
    stream_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """A disabled stream refuses publishes (and its live publisher was disconnected)."""
    reconnect_window_seconds: Mapped[int] = mapped_column(
        Integer, default=DEFAULT_RECONNECT_WINDOW_SECONDS, server_default="60"
    )
    """How long a dropped publisher may reconnect into the same session (0 = no window)."""
    max_duration_seconds: Mapped[int] = mapped_column(
        Integer, default=DEFAULT_MAX_DURATION_SECONDS, server_default="43200"
    )
    """Longest continuous live session; the publisher is disconnected when it is reached."""
    latency_mode: Mapped[str] = mapped_column(
        String(16), default=DEFAULT_LATENCY_MODE, server_default="standard"
    )
    """``low`` or ``standard``: how the stream's next session is packaged for playback. New
    rows get ``DEFAULT_LATENCY_MODE`` from here; the column's server default stays ``standard``
    (migration 0011): changing it would rebuild the table on SQLite, whose foreign keys would
    then delete every stream's recordings and targets."""
    playback_policy: Mapped[str] = mapped_column(
        String(16), default=DEFAULT_PLAYBACK_POLICY, server_default=DEFAULT_PLAYBACK_POLICY
    )
    """``public`` or ``signed``: whether live playback and recordings need a playback token."""
    renditions: Mapped[str] = mapped_column(
        String(128), default=DEFAULT_RENDITIONS, server_default=DEFAULT_RENDITIONS
    )
    """The adaptive-bitrate ladder of the next session, names joined by commas (``source``
    first; :mod:`workers.renditions`)."""
    event_sequence: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """The ``sequence`` of the stream's last webhook event (0: none yet); see
    :func:`api.webhooks.outbox.enqueue`."""

    targets: Mapped[list[RestreamTarget]] = relationship(
        order_by="RestreamTarget.position",
        cascade="all, delete-orphan",
        lazy="raise",
    )


class RestreamTarget(Base):
    """Where a live stream is relayed to: ``url`` + ``/`` + ``stream_key``."""

    __tablename__ = "restream_targets"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_object_id)
    live_stream_id: Mapped[str] = mapped_column(
        ForeignKey("live_streams.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(String(2048))
    stream_key: Mapped[str] = mapped_column(String(512))


class Recording(Base):
    """One live session of a recorded stream, kept as an HLS VOD in storage under its ``id``.

    ``status`` is ``recording`` while the session is live (or until the next start finalizes
    a recording a crash left open), then ``ready`` or ``failed`` (with ``error``); ``deleted``
    once its stream (or account) was deleted, until :mod:`api.jobs.deletion` has withdrawn its files
    and removed the row.
    """

    __tablename__ = "recordings"
    __table_args__ = (
        Index("ix_recordings_stream_started", "live_stream_id", "started_at"),
        Index("ix_recordings_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_object_id)
    live_stream_id: Mapped[str] = mapped_column(ForeignKey("live_streams.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    duration: Mapped[float] = mapped_column(Float, default=0.0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    segments: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(512), default=None)
    lease_generation: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """Generation of the stream's ownership lease its newest writer holds: a node that continues
    another node's session takes the recording over with its own, larger one, and a write of
    an earlier generation is refused."""
    data_id: Mapped[str | None] = mapped_column(String(32), default=None)
    """The data directory it was written into (``cluster_nodes.data_id`` of the nodes using it;
    ``None``: written before this was recorded). Its files are there unless they went to
    object storage."""


class LiveSession(Base):
    """One live session of a stream: from the first publish to its end (a reconnect inside the
    window continues the same session)."""

    __tablename__ = "live_sessions"
    __table_args__ = (
        Index("ix_live_sessions_stream_started", "live_stream_id", "started_at"),
        Index("ix_live_sessions_ended", "ended_at"),
    )

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_object_id)
    live_stream_id: Mapped[str] = mapped_column(ForeignKey("live_streams.id", ondelete="CASCADE"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    end_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    """``publisher_left``, ``completed``, ``disabled``, ``reset``, ``timed_out``, ``deleted``,
    ``max_duration``, ``shutdown``, ``draining``, ``error``, ``lease_lost`` or ``replaced``."""
    client_address: Mapped[str] = mapped_column(String(128))
    lease_generation: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """Generation of the stream's ownership lease the session was admitted under (the fencing
    token of its writes); null for sessions older than leases."""
    reconnects: Mapped[int] = mapped_column(Integer, default=0)
    bytes_in: Mapped[int] = mapped_column(BigInteger, default=0)
    recording_id: Mapped[str | None] = mapped_column(String(24), default=None)
    """The session's recording (null when it is not recorded, or until the recording began)."""


class Webhook(Base):
    """An account's subscription to events, delivered as signed JSON POSTs to ``url``."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_object_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON)
    """Event type patterns, e.g. ``livestream.*`` or ``recording.ready``."""
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class WebhookDelivery(Base):
    """The outbox: one event for one webhook, written in the transaction of the state change
    it reports and retried until delivered or given up."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_webhook_created", "webhook_id", "created_at"),
        Index("ix_webhook_deliveries_created", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_object_id)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(24))
    """The event's id, the same for every webhook it goes to (receivers de-duplicate on it)."""
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    """The exact JSON body sent (and signed)."""
    sequence: Mapped[int | None] = mapped_column(BigInteger, default=None)
    """The event's place among its stream's events (``None``: an event of no stream)."""
    status: Mapped[str] = mapped_column(String(16))
    """``pending``, ``delivered`` or ``failed`` (gave up)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(String(512), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class StreamLease(Base):
    """Which node owns a live stream, until ``expires_at`` (by the database's clock).

    ``generation`` is the fencing token: it grows with every new ownership (another node, or
    the same node again after its lease lapsed), so whatever a former owner still holds carries
    a smaller number. The row stays when a lease ends (released leases expire at once): the
    generation never goes back. See :mod:`api.cluster.leases`.
    """

    __tablename__ = "stream_leases"

    stream_id: Mapped[str] = mapped_column(
        ForeignKey("live_streams.id", ondelete="CASCADE"), primary_key=True
    )
    node_id: Mapped[str] = mapped_column(String(128))
    generation: Mapped[int] = mapped_column(BigInteger)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    renewed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    previous_renewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    """When the previous ownership was last renewed (or released): set as a new generation
    begins, so its new owner knows how long ago the previous owner was last seen."""


class JobLease(Base):
    """Which node runs a periodic job (retention, the full deletion sweep) until
    ``expires_at`` (by the database's clock): the lease of :class:`StreamLease` for a job
    named ``job``. See :mod:`api.jobs.turns`."""

    __tablename__ = "job_leases"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(128))
    generation: Mapped[int] = mapped_column(BigInteger)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime)
    renewed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    previous_renewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    """When the previous ownership was last renewed (or released): set as a new generation
    begins, so its new owner knows how long ago the previous owner was last seen."""


class ClusterNode(Base):
    """A ``liverelay serve`` process sharing this database, as it last reported itself.
    See :mod:`api.cluster.nodes`."""

    __tablename__ = "cluster_nodes"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    instance: Mapped[str] = mapped_column(String(32))
    """A random mark of the process that registered the row (an id may pass to another process
    once its node is lost: the old one must not heartbeat or stop in its place)."""
    internal_url: Mapped[str] = mapped_column(String(2048))
    rtmp_address: Mapped[str] = mapped_column(String(512))
    version: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    """Set by a clean shutdown."""
    draining_since: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    """Set when the node began draining (it refuses publishes and ends its sessions)."""
    data_id: Mapped[str | None] = mapped_column(String(32), default=None)
    """The id of the node's data directory (kept in it, so a restarted process on the same
    directory has the same one): where the recordings of that ``data_id`` are."""
    live_streams: Mapped[int] = mapped_column(Integer, default=0)
    load: Mapped[float] = mapped_column(Float, default=0.0)
    """The process's CPU time per second of wall time over the last heartbeat period, divided
    by the machine's CPU count (0 to 1; the ffmpeg children are not counted)."""


class ConsoleSession(Base):
    """A signed-in operator console: the cookie carries a random token, the row its SHA-256
    (``id``). Signing out deletes the row, on whichever node, so the cookie stops working on
    all of them. See :mod:`api.console.sessions`."""

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SigningKey(Base):
    """An account's key for playback tokens: only the public half is kept (PEM)."""

    __tablename__ = "signing_keys"
    __table_args__ = (Index("ix_signing_keys_account_created", "account_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_object_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    public_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
