"""The generation of the ownership lease a live session was admitted under.

Revision ID: 0006_session_lease_generation
Revises: 0005_cluster
Create Date: 2026-12-07 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_session_lease_generation"
down_revision: str | None = "0005_cluster"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``live_sessions.lease_generation`` (null for the sessions before it)."""
    with op.batch_alter_table("live_sessions") as batch:
        batch.add_column(sa.Column("lease_generation", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Drop ``live_sessions.lease_generation``."""
    with op.batch_alter_table("live_sessions") as batch:
        batch.drop_column("lease_generation")
