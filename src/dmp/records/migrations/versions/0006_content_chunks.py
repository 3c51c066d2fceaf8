"""content chunks: document content sealed in chunks, streamable

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 14:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("document_contents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chunk", sa.Integer(), nullable=False, server_default="0"))
        batch_op.drop_constraint("pk_document_contents", type_="primary")
        batch_op.create_primary_key("pk_document_contents", ["patient_id", "content_id", "chunk"])


def downgrade() -> None:
    with op.batch_alter_table("document_contents", schema=None) as batch_op:
        batch_op.drop_constraint("pk_document_contents", type_="primary")
        batch_op.create_primary_key("pk_document_contents", ["patient_id", "content_id"])
        batch_op.drop_column("chunk")
