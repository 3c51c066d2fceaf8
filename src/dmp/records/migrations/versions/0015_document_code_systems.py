"""documents keep the code system of a facility type or practice setting from another system

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-27 08:45:00

The DMP guide's examples send SNOMED CT codes for the facility type and the practice setting;
only the code was kept, so the document came back with a code and no system. Documents stored
before keep no system (None: the national set's own, as the server assumed).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("facility_system", sa.String(120), nullable=True))
        batch.add_column(sa.Column("practice_system", sa.String(120), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("practice_system")
        batch.drop_column("facility_system")
