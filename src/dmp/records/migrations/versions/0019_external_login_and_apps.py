"""logins through OpenID providers, apps the holder allows, the app in the audit trail

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 09:00:00

- oidc_logins: a login started at Pro Santé Connect or FranceConnect (its state, nonce and PKCE
  verifier), used once when the provider sends the person back.
- patients: an index on birth date and sex, where a FranceConnect identity looks for its record.
- patient_apps, app_authorizations, app_codes: apps of the catalogue (SMART App Launch), what a
  holder allowed each, and the one-time authorization codes.
- audit_events.client_id: the software or app an access came through (NULL before, and for
  the portals and commands); part of the event's MAC only when set, so earlier events verify.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oidc_logins",
        sa.Column("state_hash", sa.String(64), primary_key=True),
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("verifier", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )
    op.create_index("ix_patients_birth_date_sex", "patients", ["birth_date", "sex"])
    op.create_table(
        "patient_apps",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("publisher", sa.String(200), nullable=False),
        sa.Column("redirect_uris", sa.Text, nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "app_authorizations",
        sa.Column("patient_id", sa.String(32), sa.ForeignKey("patients.id"), primary_key=True),
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "client_id", sa.String(64), sa.ForeignKey("patient_apps.client_id"), nullable=False
        ),
        sa.Column("actor_kind", sa.String(20), nullable=False),
        sa.Column("actor_id", sa.String(64), nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("last_access_at", sa.DateTime(timezone=True)),
        sa.Column("refresh_hash", sa.String(64)),
        sa.Column("refresh_expires_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "app_codes",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("patient_id", sa.String(32), nullable=False),
        sa.Column("authorization_id", sa.String(32), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("redirect_uri", sa.Text, nullable=False),
        sa.Column("challenge", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
    )
    # A plain ADD COLUMN: a batch copy would drop the append-only triggers on SQLite.
    op.add_column("audit_events", sa.Column("client_id", sa.String(64)))


def downgrade() -> None:
    op.drop_column("audit_events", "client_id")
    op.drop_table("app_codes")
    op.drop_table("app_authorizations")
    op.drop_table("patient_apps")
    op.drop_index("ix_patients_birth_date_sex", "patients")
    op.drop_table("oidc_logins")
