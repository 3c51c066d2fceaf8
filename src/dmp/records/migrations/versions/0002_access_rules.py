"""access rules: care team, emergency access, outbox, document versions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 13:17:46.048629
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "care_team",
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("id_nat_ps", sa.String(length=32), nullable=False),
        sa.Column("declared_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("declared_by", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_care_team_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("patient_id", "id_nat_ps", name=op.f("pk_care_team")),
    )
    op.create_table(
        "emergency_accesses",
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("id_nat_ps", sa.String(length=32), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("justification_sealed", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_emergency_accesses_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint(
            "patient_id", "id_nat_ps", "opened_at", name=op.f("pk_emergency_accesses")
        ),
    )
    op.create_table(
        "notifications",
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("recipient_kind", sa.String(length=20), nullable=False),
        sa.Column("recipient_id", sa.String(length=64), nullable=True),
        sa.Column("subject_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_notifications_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("patient_id", "id", name=op.f("pk_notifications")),
    )
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("latest", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch_op.add_column(sa.Column("version_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            "ix_documents_patient_author_structure",
            ["patient_id", "author_structure"],
            unique=False,
        )
        batch_op.create_index(
            "ix_documents_patient_logical", ["patient_id", "logical_id", "version"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.drop_index("ix_documents_patient_logical")
        batch_op.drop_index("ix_documents_patient_author_structure")
        batch_op.drop_column("version_at")
        batch_op.drop_column("latest")

    op.drop_table("notifications")
    op.drop_table("emergency_accesses")
    op.drop_table("care_team")
