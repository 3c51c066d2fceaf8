"""portal accounts, one-time activation codes and server-side sessions

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 02:00:00

The web portals (registration desk, patient, legal representative, professional) log people in
with a password (argon2id) and a second factor (TOTP). An account is activated once with a code
printed on the activation letter; the code is stored only as its SHA-256 and works once.
Sessions live on the server: the cookie carries a random token, the table its hash.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portal_accounts",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("login", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("patient_id", sa.String(32), nullable=True),
        sa.Column("ins_oid", sa.String(40), nullable=True),
        sa.Column("ins_value", sa.String(15), nullable=True),
        sa.Column("structure_id", sa.String(32), nullable=True),
        sa.Column("password_hash", sa.String(200), nullable=True),
        sa.Column("totp_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("totp_enabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("recovery_hashes", sa.Text(), nullable=True),
        sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("preferences", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_portal_accounts_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_accounts")),
        sa.UniqueConstraint("login", name=op.f("uq_portal_accounts_login")),
    )
    op.create_table(
        "activation_codes",
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["portal_accounts.id"],
            name=op.f("fk_activation_codes_account_id_portal_accounts"),
        ),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_activation_codes")),
    )
    op.create_index(
        op.f("ix_activation_codes_account_id"), "activation_codes", ["account_id"], unique=False
    )
    op.create_table(
        "portal_sessions",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("stage", sa.String(12), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data_sealed", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["portal_accounts.id"],
            name=op.f("fk_portal_sessions_account_id_portal_accounts"),
        ),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_portal_sessions")),
    )
    op.create_index(
        op.f("ix_portal_sessions_account_id"), "portal_sessions", ["account_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_portal_sessions_account_id"), table_name="portal_sessions")
    op.drop_table("portal_sessions")
    op.drop_index(op.f("ix_activation_codes_account_id"), table_name="activation_codes")
    op.drop_table("activation_codes")
    op.drop_table("portal_accounts")
