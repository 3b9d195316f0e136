"""Stream lifecycle (disable, reconnect window, session cap), session history, webhooks and
their durable delivery outbox.

Revision ID: 0003_lifecycle_webhooks
Revises: 0002_recordings
Create Date: 2026-11-27 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_lifecycle_webhooks"
down_revision: str | None = "0002_recordings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the lifecycle columns; create ``live_sessions``, ``webhooks``, ``webhook_deliveries``."""
    with op.batch_alter_table("live_streams") as batch:
        batch.add_column(
            sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("reconnect_window_seconds", sa.Integer(), nullable=False, server_default="60")
        )
        batch.add_column(
            sa.Column("max_duration_seconds", sa.Integer(), nullable=False, server_default="43200")
        )
    op.create_table(
        "live_sessions",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column(
            "live_stream_id",
            sa.String(24),
            sa.ForeignKey(
                "live_streams.id", name="fk_live_sessions_live_stream_id", ondelete="CASCADE"
            ),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(32), nullable=True),
        sa.Column("client_address", sa.String(128), nullable=False),
        sa.Column("reconnects", sa.Integer(), nullable=False),
        sa.Column("bytes_in", sa.BigInteger(), nullable=False),
    )
    op.create_index(
        "ix_live_sessions_stream_started", "live_sessions", ["live_stream_id", "started_at"]
    )
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column(
            "account_id",
            sa.String(24),
            sa.ForeignKey("accounts.id", name="fk_webhooks_account_id"),
            nullable=False,
        ),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_webhooks_account_id", "webhooks", ["account_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column(
            "webhook_id",
            sa.String(24),
            sa.ForeignKey(
                "webhooks.id", name="fk_webhook_deliveries_webhook_id", ondelete="CASCADE"
            ),
            nullable=False,
        ),
        sa.Column("event_id", sa.String(24), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(512), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"]
    )
    op.create_index(
        "ix_webhook_deliveries_webhook_created", "webhook_deliveries", ["webhook_id", "created_at"]
    )


def downgrade() -> None:
    """Drop what :func:`upgrade` added."""
    op.drop_index("ix_webhook_deliveries_webhook_created", "webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_due", "webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_webhooks_account_id", "webhooks")
    op.drop_table("webhooks")
    op.drop_index("ix_live_sessions_stream_started", "live_sessions")
    op.drop_table("live_sessions")
    with op.batch_alter_table("live_streams") as batch:
        batch.drop_column("max_duration_seconds")
        batch.drop_column("reconnect_window_seconds")
        batch.drop_column("disabled")
