"""documents keep the document they are an addendum to

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 19:00:00

An addendum (XDS APND, MHD relatesTo appends) leaves the document it adds to current; the FHIR
door dropped the relation and the XDS door had none. Documents stored before are addenda of
nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("appends_id", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("appends_id")
