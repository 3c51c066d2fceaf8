"""no one takes over a record: identity status, recovery codes, shared limits (issue 21)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 09:00:00

- patients: the identity's reliability status (PROV or QUAL), the identity document the desk
  checked and when; records opened before stay provisional.
- notifications: a sealed one-time code (account recovery), erased once delivered.
- activation_codes: what a code is for (a desk's letter, or a recovery sent to the holder).
- auth_throttle: attempts and failures counted in the database, shared by every process.
- portal_devices: the devices an account logged in from.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("patients") as batch:
        batch.add_column(
            sa.Column("identity_status", sa.String(4), nullable=False, server_default="PROV")
        )
        batch.add_column(sa.Column("identity_document", sa.String(4), nullable=True))
        batch.add_column(
            sa.Column("identity_checked_at", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("secret_sealed", sa.LargeBinary, nullable=True))
    with op.batch_alter_table("activation_codes") as batch:
        batch.add_column(
            sa.Column("purpose", sa.String(10), nullable=False, server_default="letter")
        )
    op.create_table(
        "auth_throttle",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_auth_throttle"),
    )
    op.create_table(
        "portal_devices",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name="pk_portal_devices"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["portal_accounts.id"],
            name="fk_portal_devices_account_id_portal_accounts",
        ),
    )
    op.create_index("ix_portal_devices_account_id", "portal_devices", ["account_id"])


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+): a batch copy of ``patients`` would trip the foreign
    # keys of every patient table.
    op.drop_index("ix_portal_devices_account_id", "portal_devices")
    op.drop_table("portal_devices")
    op.drop_table("auth_throttle")
    op.drop_column("activation_codes", "purpose")
    op.drop_column("notifications", "secret_sealed")
    for column in ("identity_checked_at", "identity_document", "identity_status"):
        op.drop_column("patients", column)
