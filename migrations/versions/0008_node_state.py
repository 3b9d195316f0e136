"""A node's drain and data directory in the registry, and the data directory of each
recording.

Revision ID: 0008_node_state
Revises: 0007_event_sequence
Create Date: 2026-12-07 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_node_state"
down_revision: str | None = "0007_event_sequence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``cluster_nodes.draining_since``, ``cluster_nodes.data_id`` and
    ``recordings.data_id``."""
    with op.batch_alter_table("cluster_nodes") as batch:
        batch.add_column(sa.Column("draining_since", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("data_id", sa.String(32), nullable=True))
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(sa.Column("data_id", sa.String(32), nullable=True))


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("recordings") as batch:
        batch.drop_column("data_id")
    with op.batch_alter_table("cluster_nodes") as batch:
        batch.drop_column("data_id")
        batch.drop_column("draining_since")
