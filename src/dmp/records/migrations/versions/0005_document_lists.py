"""document lists

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 13:59:37.622615
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "document_lists",
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("unique_id", sa.String(length=128), nullable=True),
        sa.Column("source_id", sa.String(length=128), nullable=True),
        sa.Column("title", sa.String(length=250), nullable=True),
        sa.Column("code", sa.String(length=40), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author_id", sa.String(length=64), nullable=False),
        sa.Column("author_structure", sa.String(length=32), nullable=True),
        sa.Column("document_ids", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_document_lists_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("patient_id", "id", name=op.f("pk_document_lists")),
    )


def downgrade() -> None:
    op.drop_table("document_lists")
