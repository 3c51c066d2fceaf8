"""the outbox's delivery state, first accesses, job leases, the record's lifecycle, opt-out
provisioning

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27 02:00:00

Notifications gain a delivery state (pending, sent, skipped, dead), attempts, the last error, a
lease (a worker that claimed them until a time) and the Message-ID they were sent with. A
professional's first access to a record is remembered (it causes a notice). Timed jobs take a
lease by name, so several workers run each rule once. Records gain reopening, death, deletion
requests and the date their purge is due; a purge leaves a non-clinical trace. Insurer
beneficiaries are provisioned as pending openings a person may object to for six weeks.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(
            sa.Column("status", sa.String(10), nullable=False, server_default="pending")
        )
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_error", sa.String(200), nullable=True))
        batch.add_column(sa.Column("leased_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_until", _TS, nullable=True))
        batch.add_column(sa.Column("channel", sa.String(10), nullable=True))
        batch.add_column(sa.Column("message_id", sa.String(100), nullable=True))
    op.create_index("ix_notifications_status_due_at", "notifications", ["status", "due_at"])
    with op.batch_alter_table("records") as batch:
        batch.add_column(sa.Column("reopened_at", _TS, nullable=True))
        batch.add_column(sa.Column("died_at", _TS, nullable=True))
        batch.add_column(sa.Column("deletion_requested_at", _TS, nullable=True))
        batch.add_column(sa.Column("purge_due_at", _TS, nullable=True))
    op.create_table(
        "first_accesses",
        sa.Column("patient_id", sa.String(32), nullable=False),
        sa.Column("id_nat_ps", sa.String(32), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_first_accesses_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("patient_id", "id_nat_ps", name=op.f("pk_first_accesses")),
    )
    op.create_table(
        "job_leases",
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("leased_by", sa.String(64), nullable=True),
        sa.Column("lease_until", _TS, nullable=True),
        sa.Column("last_run_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_leases")),
    )
    op.create_table(
        "purge_traces",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("patient_id", sa.String(32), nullable=False),
        sa.Column("departement", sa.String(3), nullable=False),
        sa.Column("opened_at", _TS, nullable=False),
        sa.Column("closed_at", _TS, nullable=True),
        sa.Column("purged_at", _TS, nullable=False),
        sa.Column("reason", sa.String(20), nullable=False),
        sa.Column("documents", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purge_traces")),
    )
    op.create_table(
        "provisioning",
        sa.Column("ins_oid", sa.String(40), nullable=False),
        sa.Column("ins_value", sa.String(15), nullable=False),
        sa.Column("birth_family_name", sa.String(100), nullable=False),
        sa.Column("given_names", sa.String(200), nullable=False),
        sa.Column("sex", sa.String(1), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("residence_commune", sa.String(5), nullable=False),
        sa.Column("informed_at", _TS, nullable=False),
        sa.Column("objection_until", _TS, nullable=False),
        sa.Column("objected_at", _TS, nullable=True),
        sa.Column("opened_at", _TS, nullable=True),
        sa.Column("imported_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("ins_oid", "ins_value", name=op.f("pk_provisioning")),
    )
    op.create_index(
        "ix_provisioning_objection_until", "provisioning", ["objection_until"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_provisioning_objection_until", table_name="provisioning")
    op.drop_table("provisioning")
    op.drop_table("purge_traces")
    op.drop_table("job_leases")
    op.drop_table("first_accesses")
    with op.batch_alter_table("records") as batch:
        for name in ("purge_due_at", "deletion_requested_at", "died_at", "reopened_at"):
            batch.drop_column(name)
    op.drop_index("ix_notifications_status_due_at", table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        for name in (
            "message_id",
            "channel",
            "lease_until",
            "leased_by",
            "last_error",
            "attempts",
            "status",
        ):
            batch.drop_column(name)
