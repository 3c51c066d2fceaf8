"""the database records the key ring that sealed it (issue 22, item 6)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 10:00:00

A server started with a ring that did not seal the database (present, but another
installation's) used to start, answer 500 on older data and MAC new audit events under the
wrong key. The seal is written at the first start after this revision, once the ring is shown
to hold every key id the database uses.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ring_seals",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("proof", sa.String(64), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ring_seals"),
    )


def downgrade() -> None:
    op.drop_table("ring_seals")
