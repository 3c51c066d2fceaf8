"""pending statistics: document and access counts written beside the patient, folded later

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 23:00:00

A consultation or a deposit no longer updates a shared counter row in its transaction: it
inserts one pending row keyed by its patient (no contention, and the patient's shard in a
distributed deployment), folded into the counters by the server in the background. Reads add
what is still pending, so the figures stay exact at every moment.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stats_pending",
        sa.Column("patient_id", sa.String(32), primary_key=True),
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("counter", sa.String(16), nullable=False),
        sa.Column("departement", sa.String(3), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("code", sa.String(20), nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("stats_pending")
