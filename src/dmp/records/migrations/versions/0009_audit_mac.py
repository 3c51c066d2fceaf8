"""audit MAC: each event names the key-ring key its MAC was computed with

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 20:30:00

Events written before this migration keep their plain SHA-256 hash (key_id NULL); every later
event is an HMAC under a key of the key ring, chained over the previous hash, so rewriting the
older events breaks the first keyed one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_events", sa.Column("key_id", sa.String(40)))


def downgrade() -> None:
    op.drop_column("audit_events", "key_id")
