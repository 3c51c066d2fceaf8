"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26 13:02:45.875695
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "audit_events",
        sa.Column("chain_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("patient_id", sa.String(length=32), nullable=True),
        sa.Column("actor_kind", sa.String(length=20), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=False),
        sa.Column("structure_id", sa.String(length=32), nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=True),
        sa.Column("targets", sa.Text(), nullable=True),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(length=60), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("client_addr", sa.String(length=64), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "seq", name=op.f("pk_audit_events")),
    )
    op.create_table(
        "audit_heads",
        sa.Column("chain_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", name=op.f("pk_audit_heads")),
    )
    op.create_table(
        "patients",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("ins_oid", sa.String(length=40), nullable=False),
        sa.Column("ins_value", sa.String(length=15), nullable=False),
        sa.Column("birth_family_name", sa.String(length=100), nullable=False),
        sa.Column("used_name", sa.String(length=100), nullable=True),
        sa.Column("given_names", sa.String(length=200), nullable=False),
        sa.Column("sex", sa.String(length=1), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("birth_place_code", sa.String(length=5), nullable=True),
        sa.Column("residence_commune", sa.String(length=5), nullable=False),
        sa.Column("departement", sa.String(length=3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patients")),
        sa.UniqueConstraint("ins_value", "ins_oid", name=op.f("uq_patients_ins_value_ins_oid")),
    )
    op.create_table(
        "professionals",
        sa.Column("id_nat_ps", sa.String(length=32), nullable=False),
        sa.Column("family_name", sa.String(length=100), nullable=False),
        sa.Column("given_name", sa.String(length=100), nullable=False),
        sa.Column("profession_code", sa.String(length=4), nullable=False),
        sa.Column("profession_label", sa.String(length=100), nullable=True),
        sa.Column("specialty_code", sa.String(length=16), nullable=True),
        sa.Column("specialty_label", sa.String(length=200), nullable=True),
        sa.Column("pharmacist_section", sa.String(length=4), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id_nat_ps", name=op.f("pk_professionals")),
    )
    op.create_table(
        "structures",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("finess", sa.String(length=9), nullable=True),
        sa.Column("siret", sa.String(length=14), nullable=True),
        sa.Column("sector_code", sa.String(length=8), nullable=True),
        sa.Column("sector_label", sa.String(length=200), nullable=True),
        sa.Column("commune", sa.String(length=5), nullable=True),
        sa.Column("departement", sa.String(length=3), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_structures")),
    )
    op.create_table(
        "document_contents",
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("content_id", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_document_contents_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("patient_id", "content_id", name=op.f("pk_document_contents")),
    )
    op.create_table(
        "documents",
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("logical_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("unique_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("type_code", sa.String(length=20), nullable=False),
        sa.Column("class_code", sa.String(length=20), nullable=False),
        sa.Column("format_code", sa.String(length=80), nullable=False),
        sa.Column("mime_type", sa.String(length=80), nullable=False),
        sa.Column("title", sa.String(length=250), nullable=False),
        sa.Column("language", sa.String(length=10), nullable=False),
        sa.Column("creation_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service_stop", sa.DateTime(timezone=True), nullable=True),
        sa.Column("facility_type", sa.String(length=20), nullable=True),
        sa.Column("practice_setting", sa.String(length=20), nullable=True),
        sa.Column("author_kind", sa.String(length=20), nullable=False),
        sa.Column("author_id", sa.String(length=64), nullable=False),
        sa.Column("author_structure", sa.String(length=32), nullable=True),
        sa.Column("confidentiality", sa.String(length=1), nullable=False),
        sa.Column("masked_ps", sa.Boolean(), nullable=False),
        sa.Column("invisible_patient", sa.Boolean(), nullable=False),
        sa.Column("invisible_patient_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("invisible_representatives", sa.Boolean(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("sha1", sa.String(length=40), nullable=False),
        sa.Column("content_id", sa.String(length=32), nullable=False),
        sa.Column("replaces_id", sa.String(length=32), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_documents_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("patient_id", "id", name=op.f("pk_documents")),
    )
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.create_index(
            "ix_documents_patient_status_service",
            ["patient_id", "status", "service_start"],
            unique=False,
        )
        batch_op.create_index(
            "ix_documents_patient_unique", ["patient_id", "unique_id"], unique=False
        )

    op.create_table(
        "legal_representatives",
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("representative_id", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("relationship", sa.String(length=40), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_legal_representatives_patient_id_patients"),
        ),
        sa.PrimaryKeyConstraint(
            "patient_id", "representative_id", name=op.f("pk_legal_representatives")
        ),
    )
    op.create_table(
        "patient_keys",
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("kek_id", sa.String(length=40), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shredded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_patient_keys_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("patient_id", "key_id", name=op.f("pk_patient_keys")),
    )
    op.create_table(
        "professional_activities",
        sa.Column("id_nat_ps", sa.String(length=32), nullable=False),
        sa.Column("structure_id", sa.String(length=32), nullable=False),
        sa.Column("mode", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["id_nat_ps"],
            ["professionals.id_nat_ps"],
            name=op.f("fk_professional_activities_id_nat_ps_professionals"),
        ),
        sa.ForeignKeyConstraint(
            ["structure_id"],
            ["structures.id"],
            name=op.f("fk_professional_activities_structure_id_structures"),
        ),
        sa.PrimaryKeyConstraint(
            "id_nat_ps", "structure_id", name=op.f("pk_professional_activities")
        ),
    )
    op.create_table(
        "professional_permissions",
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("id_nat_ps", sa.String(length=32), nullable=False),
        sa.Column("consented_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consent_declared_by", sa.String(length=64), nullable=True),
        sa.Column("blocked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_professional_permissions_patient_id_patients"),
        ),
        sa.PrimaryKeyConstraint(
            "patient_id", "id_nat_ps", name=op.f("pk_professional_permissions")
        ),
    )
    op.create_table(
        "records",
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("channel", sa.String(length=30), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_by_kind", sa.String(length=20), nullable=False),
        sa.Column("opened_by", sa.String(length=64), nullable=False),
        sa.Column("opened_by_structure", sa.String(length=64), nullable=True),
        sa.Column("initial_consent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("initial_consent_collected_by", sa.String(length=64), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closure_reason", sa.String(length=200), nullable=True),
        sa.Column("closed_by", sa.String(length=64), nullable=True),
        sa.Column("oppose_bris_de_glace", sa.Boolean(), nullable=False),
        sa.Column("oppose_centre_15", sa.Boolean(), nullable=False),
        sa.Column("mask_all", sa.Boolean(), nullable=False),
        sa.Column("medecin_traitant", sa.String(length=64), nullable=True),
        sa.Column("is_minor", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_records_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_records")),
    )
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.create_index("ix_records_status_opened_at", ["status", "opened_at"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index("ix_records_status_opened_at")

    op.drop_table("records")
    op.drop_table("professional_permissions")
    op.drop_table("professional_activities")
    op.drop_table("patient_keys")
    op.drop_table("legal_representatives")
    with op.batch_alter_table("documents", schema=None) as batch_op:
        batch_op.drop_index("ix_documents_patient_unique")
        batch_op.drop_index("ix_documents_patient_status_service")

    op.drop_table("documents")
    op.drop_table("document_contents")
    op.drop_table("structures")
    op.drop_table("professionals")
    op.drop_table("patients")
    op.drop_table("audit_heads")
    op.drop_table("audit_events")
