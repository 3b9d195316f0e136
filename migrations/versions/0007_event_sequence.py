"""Per-stream sequence numbers of webhook events, and leases of periodic jobs.

Revision ID: 0007_event_sequence
Revises: 0006_session_lease_generation
Create Date: 2026-12-07 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_event_sequence"
down_revision: str | None = "0006_session_lease_generation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``live_streams.event_sequence`` and ``webhook_deliveries.sequence``; create
    ``job_leases``."""
    with op.batch_alter_table("live_streams") as batch:
        batch.add_column(
            sa.Column("event_sequence", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("sequence", sa.BigInteger(), nullable=True))
    op.create_table(
        "job_leases",
        sa.Column("job", sa.String(64), primary_key=True),
        sa.Column("node_id", sa.String(128), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("renewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop them again."""
    op.drop_table("job_leases")
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("sequence")
    with op.batch_alter_table("live_streams") as batch:
        batch.drop_column("event_sequence")
