"""How a stream is packaged for playback: ``live_streams.latency_mode``, ``standard`` (MPEG-TS
HLS, what every stream had before) or ``low`` (low-latency HLS with fMP4 parts).

Revision ID: 0011_latency_mode
Revises: 0010_console_sessions
Create Date: 2026-12-07 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_latency_mode"
down_revision: str | None = "0010_console_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``live_streams.latency_mode``, ``standard`` for every existing stream."""
    with op.batch_alter_table("live_streams") as batch:
        batch.add_column(
            sa.Column("latency_mode", sa.String(16), nullable=False, server_default="standard")
        )


def downgrade() -> None:
    """Drop it again."""
    with op.batch_alter_table("live_streams") as batch:
        batch.drop_column("latency_mode")
