"""Indexes for retention (webhook deliveries by creation time, live sessions by end time); the
streams of deleted accounts are deleted with them, and the recordings of deleted streams are
marked ``deleted`` so that the server removes their files; webhook payloads stored earlier lose
their publish keys (``streamKey``, ``upstreamUrl``), as payloads are written from now on.

Revision ID: 0004_retention
Revises: 0003_lifecycle_webhooks
Create Date: 2026-12-06 00:00:00
"""

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004_retention"
down_revision: str | None = "0003_lifecycle_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Index what the retention task selects old rows by."""
    op.create_index("ix_webhook_deliveries_created", "webhook_deliveries", ["created_at"])
    op.create_index("ix_live_sessions_ended", "live_sessions", ["ended_at"])
    op.execute(
        sa.text(
            "UPDATE live_streams SET deleted_at = (SELECT accounts.deleted_at FROM accounts"
            " WHERE accounts.id = live_streams.account_id)"
            " WHERE deleted_at IS NULL AND account_id IN"
            " (SELECT id FROM accounts WHERE deleted_at IS NOT NULL)"
        )
    )
    op.execute(
        sa.text(
            "UPDATE recordings SET status = 'deleted' WHERE live_stream_id IN"
            " (SELECT id FROM live_streams WHERE deleted_at IS NOT NULL)"
        )
    )
    _scrub_stored_payloads()


SECRET_FIELDS = frozenset({"streamKey", "upstreamUrl"})
"""What payloads written before this revision carried and payloads no longer do."""


def _scrub_stored_payloads() -> None:
    """Rewrite the stored webhook payloads that still name a publish key without it, in
    Python (the JSON functions of SQLite and PostgreSQL differ)."""
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT id, payload FROM webhook_deliveries"
            " WHERE payload LIKE '%streamKey%' OR payload LIKE '%upstreamUrl%'"
        )
    ).all()
    update = sa.text("UPDATE webhook_deliveries SET payload = :payload WHERE id = :id")
    for id_, payload in rows:
        try:
            document = json.loads(payload)
        except ValueError:
            continue
        connection.execute(
            update,
            {"id": id_, "payload": json.dumps(_without_secrets(document), separators=(",", ":"))},
        )


def _without_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_secrets(v) for k, v in value.items() if k not in SECRET_FIELDS}
    if isinstance(value, list):
        return [_without_secrets(item) for item in value]
    return value


def downgrade() -> None:
    """Drop the indexes (deleted rows stay deleted)."""
    op.drop_index("ix_live_sessions_ended", "live_sessions")
    op.drop_index("ix_webhook_deliveries_created", "webhook_deliveries")
