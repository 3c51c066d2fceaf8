"""statistics

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 13:37:46.818360
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "milestones",
        sa.Column("departement", sa.String(length=3), nullable=False),
        sa.Column("threshold", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("reached_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("structure_id", sa.String(length=32), nullable=True),
        sa.Column("channel", sa.String(length=30), nullable=False),
        sa.PrimaryKeyConstraint("departement", "threshold", name=op.f("pk_milestones")),
    )
    op.create_table(
        "stats_accesses",
        sa.Column("departement", sa.String(length=3), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("shard", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "departement", "month", "purpose", "shard", name=op.f("pk_stats_accesses")
        ),
    )
    op.create_table(
        "stats_departements",
        sa.Column("departement", sa.String(length=3), nullable=False),
        sa.Column("opened", sa.BigInteger(), nullable=False),
        sa.Column("active", sa.BigInteger(), nullable=False),
        sa.Column("closed", sa.BigInteger(), nullable=False),
        sa.Column("activated", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("departement", name=op.f("pk_stats_departements")),
    )
    op.create_table(
        "stats_documents",
        sa.Column("departement", sa.String(length=3), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("type_code", sa.String(length=20), nullable=False),
        sa.Column("shard", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "departement", "month", "type_code", "shard", name=op.f("pk_stats_documents")
        ),
    )
    op.create_table(
        "stats_openings",
        sa.Column("departement", sa.String(length=3), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("channel", sa.String(length=30), nullable=False),
        sa.Column("structure_kind", sa.String(length=16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "departement", "month", "channel", "structure_kind", name=op.f("pk_stats_openings")
        ),
    )
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_column("activated_at")

    op.drop_table("stats_openings")
    op.drop_table("stats_documents")
    op.drop_table("stats_departements")
    op.drop_table("stats_accesses")
    op.drop_table("milestones")
