"""Adaptive bitrate: ``live_streams.renditions``, the ladder of a stream's next session (names
joined by commas, ``source`` first); ``source`` alone, what every stream had before.

Revision ID: 0014_renditions
Revises: 0012_signed_playback
Create Date: 2026-12-07 08:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_renditions"
down_revision: str | None = "0012_signed_playback"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``live_streams.renditions``, ``source`` for every existing stream."""
    with op.batch_alter_table("live_streams") as batch:
        batch.add_column(
            sa.Column("renditions", sa.String(128), nullable=False, server_default="source")
        )


def downgrade() -> None:
    """Drop it again."""
    with op.batch_alter_table("live_streams") as batch:
        batch.drop_column("renditions")
