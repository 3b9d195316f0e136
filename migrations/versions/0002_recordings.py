"""Recordings: one row per recorded live session.

Revision ID: 0002_recordings
Revises: 0001_initial
Create Date: 2024-02-01 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_recordings"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``recordings`` (a new table: no ALTER, so no batch copy is needed on SQLite)."""
    op.create_table(
        "recordings",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column(
            "live_stream_id",
            sa.String(24),
            sa.ForeignKey(
                "live_streams.id", name="fk_recordings_live_stream_id", ondelete="CASCADE"
            ),
            nullable=False,
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("segments", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(512), nullable=True),
    )
    with op.batch_alter_table("recordings") as batch:
        batch.create_index("ix_recordings_stream_started", ["live_stream_id", "started_at"])
        batch.create_index("ix_recordings_status", ["status"])


def downgrade() -> None:
    """Drop ``recordings``."""
    with op.batch_alter_table("recordings") as batch:
        batch.drop_index("ix_recordings_status")
        batch.drop_index("ix_recordings_stream_started")
    op.drop_table("recordings")
