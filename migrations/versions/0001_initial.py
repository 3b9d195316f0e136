"""Accounts, live streams and restream targets.

Revision ID: 0001_initial
Revises:
Create Date: 2024-01-01 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the three tables."""
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("apikey", sa.String(64), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("apikey", name="uq_accounts_apikey"),
    )
    op.create_table(
        "live_streams",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column(
            "account_id",
            sa.String(24),
            sa.ForeignKey("accounts.id", name="fk_live_streams_account_id"),
            nullable=False,
        ),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("record", sa.Boolean(), nullable=False),
        sa.Column("stream_key", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("stream_key", name="uq_live_streams_stream_key"),
    )
    op.create_index("ix_live_streams_account_created", "live_streams", ["account_id", "created_at"])
    op.create_table(
        "restream_targets",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column(
            "live_stream_id",
            sa.String(24),
            sa.ForeignKey(
                "live_streams.id", name="fk_restream_targets_live_stream_id", ondelete="CASCADE"
            ),
            nullable=False,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("stream_key", sa.String(512), nullable=False),
    )
    op.create_index("ix_restream_targets_live_stream_id", "restream_targets", ["live_stream_id"])


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_index("ix_restream_targets_live_stream_id", table_name="restream_targets")
    op.drop_table("restream_targets")
    op.drop_index("ix_live_streams_account_created", table_name="live_streams")
    op.drop_table("live_streams")
    op.drop_table("accounts")
