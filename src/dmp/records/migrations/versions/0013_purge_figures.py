"""the purge trace keeps the record's share of the adoption figures

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27 02:30:00

A purge deletes the rows the statistics recount is made from; the trace now keeps what the
record counted for (aggregates by département, month, channel, type and mode), so that
`dmp stats --verify` and `--rebuild` still agree with the published counters.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("purge_traces") as batch:
        batch.add_column(sa.Column("figures", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("purge_traces") as batch:
        batch.drop_column("figures")
