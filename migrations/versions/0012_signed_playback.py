"""Signed playback: ``live_streams.playback_policy`` (``public`` for every existing stream) and
the ``signing_keys`` table (the public half of each account's playback-token keys).

Revision ID: 0012_signed_playback
Revises: 0011_latency_mode
Create Date: 2026-12-07 07:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_signed_playback"
down_revision: str | None = "0011_latency_mode"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the column and the table."""
    with op.batch_alter_table("live_streams") as batch:
        batch.add_column(
            sa.Column("playback_policy", sa.String(16), nullable=False, server_default="public")
        )
    op.create_table(
        "signing_keys",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column(
            "account_id",
            sa.String(24),
            sa.ForeignKey("accounts.id", ondelete="CASCADE", name="fk_signing_keys_account_id"),
            nullable=False,
        ),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_signing_keys_account_created", "signing_keys", ["account_id", "created_at"])


def downgrade() -> None:
    """Drop them again."""
    op.drop_index("ix_signing_keys_account_created", table_name="signing_keys")
    op.drop_table("signing_keys")
    with op.batch_alter_table("live_streams") as batch:
        batch.drop_column("playback_policy")
