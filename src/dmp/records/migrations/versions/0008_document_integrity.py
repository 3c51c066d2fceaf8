"""document integrity: one document per uniqueId in a record, one latest version per document

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 20:00:00

Concurrent requests on PostgreSQL once accepted a uniqueId twice and marked several versions of
one document as the latest. These unique partial indexes make the database refuse both. A
database that already holds such duplicates is not changed: the upgrade stops and names how many
there are, so that an operator resolves them (nothing is deleted automatically).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_DUPLICATES = {
    "uniqueId": "SELECT count(*) FROM (SELECT patient_id, unique_id FROM documents "
    "WHERE version = 1 GROUP BY patient_id, unique_id HAVING count(*) > 1) d",
    "latest version": "SELECT count(*) FROM (SELECT patient_id, logical_id FROM documents "
    "WHERE latest GROUP BY patient_id, logical_id HAVING count(*) > 1) d",
}


def upgrade() -> None:
    bind = op.get_bind()
    for what, query in _DUPLICATES.items():
        count = bind.execute(sa.text(query)).scalar_one()
        if count:
            raise RuntimeError(
                f"{count} documents have a duplicated {what}; resolve them before upgrading "
                "(see docs/decisions/0007-document-integrity.md)"
            )
    op.drop_index("ix_documents_patient_unique", table_name="documents")
    op.create_index(
        "ux_documents_patient_unique",
        "documents",
        ["patient_id", "unique_id"],
        unique=True,
        postgresql_where=sa.text("version = 1"),
        sqlite_where=sa.text("version = 1"),
    )
    op.create_index(
        "ux_documents_patient_latest",
        "documents",
        ["patient_id", "logical_id"],
        unique=True,
        postgresql_where=sa.text("latest"),
        sqlite_where=sa.text("latest"),
    )


def downgrade() -> None:
    op.drop_index("ux_documents_patient_latest", table_name="documents")
    op.drop_index("ux_documents_patient_unique", table_name="documents")
    op.create_index("ix_documents_patient_unique", "documents", ["patient_id", "unique_id"])
