"""records closed per month: the curve of active records

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-27 08:30:00

The counters knew how many records are closed, not when: the trend of active records month by
month needs closures by month. The table is filled from the records closed today (their
closure month); a reopening takes its closure back.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stats_closures",
        sa.Column("departement", sa.String(3), primary_key=True),
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
    )
    conn = op.get_bind()
    records = sa.table(
        "records", sa.column("patient_id"), sa.column("status"), sa.column("closed_at")
    )
    patients = sa.table("patients", sa.column("id"), sa.column("departement"))
    closures = sa.table(
        "stats_closures", sa.column("departement"), sa.column("month"), sa.column("count")
    )
    closed_at = records.c.closed_at
    month = (
        sa.func.to_char(closed_at, "YYYY-MM")
        if conn.dialect.name == "postgresql"
        else sa.func.strftime("%Y-%m", closed_at)
    )
    closed = (
        sa.select(patients.c.departement, month, sa.func.count())
        .select_from(records.join(patients, patients.c.id == records.c.patient_id))
        .where(records.c.status == "closed", closed_at.is_not(None))
        .group_by(patients.c.departement, month)
    )
    conn.execute(closures.insert().from_select(["departement", "month", "count"], closed))


def downgrade() -> None:
    op.drop_table("stats_closures")
