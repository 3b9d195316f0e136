"""What a node needs to continue a session another node began: the session's recording, the
generation a recording is written under, and when a lease's previous owner was last seen.

Revision ID: 0009_session_resume
Revises: 0008_node_state
Create Date: 2026-12-07 05:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_session_resume"
down_revision: str | None = "0008_node_state"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LEASES = ("stream_leases", "job_leases")


def upgrade() -> None:
    """Add ``live_sessions.recording_id``, ``recordings.lease_generation`` and
    ``previous_renewed_at`` of both lease tables (all null for the rows before them)."""
    with op.batch_alter_table("live_sessions") as batch:
        batch.add_column(sa.Column("recording_id", sa.String(24), nullable=True))
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(sa.Column("lease_generation", sa.BigInteger(), nullable=True))
    for table in _LEASES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("previous_renewed_at", sa.DateTime(timezone=True), nullable=True)
            )


def downgrade() -> None:
    """Drop them again."""
    for table in _LEASES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("previous_renewed_at")
    with op.batch_alter_table("recordings") as batch:
        batch.drop_column("lease_generation")
    with op.batch_alter_table("live_sessions") as batch:
        batch.drop_column("recording_id")
