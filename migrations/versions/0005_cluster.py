"""Stream ownership leases and the node registry, for several nodes sharing one database.

Revision ID: 0005_cluster
Revises: 0004_retention
Create Date: 2026-12-07 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_cluster"
down_revision: str | None = "0004_retention"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``stream_leases`` and ``cluster_nodes``."""
    op.create_table(
        "stream_leases",
        sa.Column(
            "stream_id",
            sa.String(24),
            sa.ForeignKey("live_streams.id", name="fk_stream_leases_stream_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("node_id", sa.String(128), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("renewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "cluster_nodes",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("instance", sa.String(32), nullable=False),
        sa.Column("internal_url", sa.String(2048), nullable=False),
        sa.Column("rtmp_address", sa.String(512), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("live_streams", sa.Integer(), nullable=False),
        sa.Column("load", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    """Drop both tables."""
    op.drop_table("cluster_nodes")
    op.drop_table("stream_leases")
