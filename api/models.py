"""SQLAlchemy models of the durable state: accounts, live streams, their restream targets and
their recordings.

Relationships are ``lazy="raise"``: every query says what it loads, nothing is fetched implicitly
(which would fail under asyncio anyway).
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

from sqlalchemy import (
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
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


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
    a recording a crash left open), then ``ready`` or ``failed`` (with ``error``).
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
