"""Indexes for retention: webhook deliveries by creation time, live sessions by end time.

Revision ID: 0004_retention
Revises: 0003_lifecycle_webhooks
Create Date: 2026-12-06 00:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_retention"
down_revision: str | None = "0003_lifecycle_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Index what the retention task selects old rows by."""
    op.create_index("ix_webhook_deliveries_created", "webhook_deliveries", ["created_at"])
    op.create_index("ix_live_sessions_ended", "live_sessions", ["ended_at"])


def downgrade() -> None:
    """Drop what :func:`upgrade` added."""
    op.drop_index("ix_live_sessions_ended", "live_sessions")
    op.drop_index("ix_webhook_deliveries_created", "webhook_deliveries")
