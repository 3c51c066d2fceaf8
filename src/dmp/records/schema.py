"""The schema, shared by SQLite and PostgreSQL (Alembic migrations create it).

Every table that holds patient data carries ``patient_id`` first in its primary key and indexes,
so one patient's data is one index range and the schema can be distributed by patient.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both engines (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


ID = sa.String(32)  # uuid4 hex

patients = sa.Table(
    "patients",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("ins_oid", sa.String(40), nullable=False),
    sa.Column("ins_value", sa.String(15), nullable=False),
    sa.Column("birth_family_name", sa.String(100), nullable=False),
    sa.Column("used_name", sa.String(100)),
    sa.Column("given_names", sa.String(200), nullable=False),
    sa.Column("sex", sa.String(1), nullable=False),
    sa.Column("birth_date", sa.Date, nullable=False),
    sa.Column("birth_place_code", sa.String(5)),
    sa.Column("residence_commune", sa.String(5), nullable=False),
    sa.Column("departement", sa.String(3), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # Identity reliability (RNIV): PROV, or QUAL once the strict traits were checked against a
    # high-trust document (its FR Core validation-mode code) or by a trusted third party.
    sa.Column("identity_status", sa.String(4), nullable=False, server_default="PROV"),
    sa.Column("identity_document", sa.String(4)),
    sa.Column("identity_checked_at", UtcDateTime),
    sa.UniqueConstraint("ins_value", "ins_oid"),
    # Where a FranceConnect identity (birth date, sex, names, birth place) looks for its record.
    sa.Index("ix_patients_birth_date_sex", "birth_date", "sex"),
)

records = sa.Table(
    "records",
    metadata,
    sa.Column("patient_id", ID, sa.ForeignKey("patients.id"), primary_key=True),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("channel", sa.String(30), nullable=False),
    sa.Column("opened_at", UtcDateTime, nullable=False),
    sa.Column("opened_by_kind", sa.String(20), nullable=False),
    sa.Column("opened_by", sa.String(64), nullable=False),
    sa.Column("opened_by_structure", sa.String(64)),
    # Explicit initial consent to access by the care team (AC-4; Conseil d'État, 15 Oct 2025).
    sa.Column("initial_consent_at", UtcDateTime),
    sa.Column("initial_consent_collected_by", sa.String(64)),
    sa.Column("closed_at", UtcDateTime),
    sa.Column("closure_reason", sa.String(200)),
    sa.Column("closed_by", sa.String(64)),
    sa.Column("oppose_bris_de_glace", sa.Boolean, nullable=False, default=False),
    sa.Column("oppose_centre_15", sa.Boolean, nullable=False, default=False),
    sa.Column("mask_all", sa.Boolean, nullable=False, default=False),
    sa.Column("medecin_traitant", sa.String(64)),
    sa.Column("is_minor", sa.Boolean, nullable=False, default=False),
    # When the holder activated their online account (Mon espace santé), if they did.
    sa.Column("activated_at", UtcDateTime),
    # Lifecycle: reopened after a closure; closed by the holder's death; an explicit deletion
    # request; when the purge is due (closure + retention, or the deletion deadline).
    sa.Column("reopened_at", UtcDateTime),
    sa.Column("died_at", UtcDateTime),
    sa.Column("deletion_requested_at", UtcDateTime),
    sa.Column("purge_due_at", UtcDateTime),
    sa.Index("ix_records_status_opened_at", "status", "opened_at"),
)

legal_representatives = sa.Table(
    "legal_representatives",
    metadata,
    sa.Column("patient_id", ID, sa.ForeignKey("patients.id"), primary_key=True),
    sa.Column("representative_id", sa.String(64), primary_key=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("relationship", sa.String(40), nullable=False),
    sa.Column("since", UtcDateTime, nullable=False),
)

professionals = sa.Table(
    "professionals",
    metadata,
    sa.Column("id_nat_ps", sa.String(32), primary_key=True),
    sa.Column("family_name", sa.String(100), nullable=False),
    sa.Column("given_name", sa.String(100), nullable=False),
    sa.Column("profession_code", sa.String(4), nullable=False),
    sa.Column("profession_label", sa.String(100)),
    sa.Column("specialty_code", sa.String(16)),
    sa.Column("specialty_label", sa.String(200)),
    sa.Column("pharmacist_section", sa.String(4)),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

structures = sa.Table(
    "structures",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # idNatStruct
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("finess", sa.String(9)),
    sa.Column("siret", sa.String(14)),
    sa.Column("sector_code", sa.String(8)),  # secteur d'activité (SA33 officine, SA01 hôpital)
    sa.Column("sector_label", sa.String(200)),
    sa.Column("commune", sa.String(5)),
    sa.Column("departement", sa.String(3)),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

professional_activities = sa.Table(
    "professional_activities",
    metadata,
    sa.Column(
        "id_nat_ps", sa.String(32), sa.ForeignKey("professionals.id_nat_ps"), primary_key=True
    ),
    sa.Column("structure_id", sa.String(32), sa.ForeignKey("structures.id"), primary_key=True),
    sa.Column("mode", sa.String(40)),
)

# The patient's decisions about one professional: consent declared, or blocked (AC-3, AC-4).
professional_permissions = sa.Table(
    "professional_permissions",
    metadata,
    sa.Column("patient_id", ID, sa.ForeignKey("patients.id"), primary_key=True),
    sa.Column("id_nat_ps", sa.String(32), primary_key=True),
    sa.Column("consented_at", UtcDateTime),
    sa.Column("consent_declared_by", sa.String(64)),
    sa.Column("blocked_at", UtcDateTime),
)

# Professionals the patient (or a professional holding access, L1111-17 II) declared part of the
# care team (équipe de soins, L1110-12): with the initial consent, they read without a consent of
# their own (AC-4).
care_team = sa.Table(
    "care_team",
    metadata,
    sa.Column("patient_id", ID, sa.ForeignKey("patients.id"), primary_key=True),
    sa.Column("id_nat_ps", sa.String(32), primary_key=True),
    sa.Column("declared_at", UtcDateTime, nullable=False),
    sa.Column("declared_by", sa.String(64), nullable=False),
)

# Emergency access windows (bris de glace, AC-8): opened with a justification, time-boxed.
emergency_accesses = sa.Table(
    "emergency_accesses",
    metadata,
    sa.Column("patient_id", ID, sa.ForeignKey("patients.id"), primary_key=True),
    sa.Column("id_nat_ps", sa.String(32), primary_key=True),
    sa.Column("opened_at", UtcDateTime, primary_key=True),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("justification_sealed", sa.LargeBinary, nullable=False),
)

# Transactional outbox: notifications due, written in the transaction of the event that causes
# them; delivery (e-mail, SMS) reads it. No document content, no free text.
notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("patient_id", ID, sa.ForeignKey("patients.id"), primary_key=True),
    sa.Column("id", ID, primary_key=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("recipient_kind", sa.String(20), nullable=False),
    sa.Column("recipient_id", sa.String(64)),
    sa.Column("subject_id", sa.String(64)),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("due_at", UtcDateTime, nullable=False),  # and, after a failure, the next attempt
    sa.Column("sent_at", UtcDateTime),
    # Delivery: pending -> sent | skipped (nothing to send: no contact, preference off, the
    # reason gone) | dead (failed too often; an operator may retry it).
    sa.Column("status", sa.String(10), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.String(200)),
    sa.Column("leased_by", sa.String(64)),  # the worker delivering it, until lease_until
    sa.Column("lease_until", UtcDateTime),
    sa.Column("channel", sa.String(10)),
    sa.Column("message_id", sa.String(100)),  # stable per notice: a receiver can deduplicate
    # A one-time code for the holder (account recovery), sealed under a key of the key ring
    # until it is delivered, then erased: nobody but the holder's channel ever sees it.
    sa.Column("secret_sealed", sa.LargeBinary),
    sa.Index("ix_notifications_status_due_at", "status", "due_at"),
)

# A professional's first access to a record (it causes a notice to the holder).
first_accesses = sa.Table(
    "first_accesses",
    metadata,
    sa.Column("patient_id", ID, sa.ForeignKey("patients.id"), primary_key=True),
    sa.Column("id_nat_ps", sa.String(32), primary_key=True),
    sa.Column("at", UtcDateTime, nullable=False),
)

# Timed jobs: one lease per rule, so that several workers run each rule once at a time.
job_leases = sa.Table(
    "job_leases",
    metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("leased_by", sa.String(64)),
    sa.Column("lease_until", UtcDateTime),
    sa.Column("last_run_at", UtcDateTime),
)

# What remains of a purged record: no clinical data, no identity; the key is the former
# patient key (so the audit trail's chain can be matched), the figures the statistics need.
purge_traces = sa.Table(
    "purge_traces",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("patient_id", ID, nullable=False),
    sa.Column("departement", sa.String(3), nullable=False),
    sa.Column("opened_at", UtcDateTime, nullable=False),
    sa.Column("closed_at", UtcDateTime),
    sa.Column("purged_at", UtcDateTime, nullable=False),
    sa.Column("reason", sa.String(20), nullable=False),  # retention | deletion_request
    sa.Column("documents", sa.Integer, nullable=False),
    # The record's share of the adoption figures (openings, documents by month and type,
    # accesses by month and mode), so that a recount still matches the published counters.
    sa.Column("figures", sa.Text),
)

# Opt-out provisioning: insurer beneficiaries informed of their record's coming opening; each
# may object until ``objection_until`` (six weeks); the record opens by itself after that.
provisioning = sa.Table(
    "provisioning",
    metadata,
    sa.Column("ins_oid", sa.String(40), primary_key=True),
    sa.Column("ins_value", sa.String(15), primary_key=True),
    sa.Column("birth_family_name", sa.String(100), nullable=False),
    sa.Column("given_names", sa.String(200), nullable=False),
    sa.Column("sex", sa.String(1), nullable=False),
    sa.Column("birth_date", sa.Date, nullable=False),
    sa.Column("residence_commune", sa.String(5), nullable=False),
    sa.Column("informed_at", UtcDateTime, nullable=False),
    sa.Column("objection_until", UtcDateTime, nullable=False),
    sa.Column("objected_at", UtcDateTime),
    sa.Column("opened_at", UtcDateTime),
    sa.Column("imported_at", UtcDateTime, nullable=False),
    sa.Index("ix_provisioning_objection_until", "objection_until"),
)

patient_keys = sa.Table(
    "patient_keys",
    metadata,
    sa.Column("patient_id", ID, sa.ForeignKey("patients.id"), primary_key=True),
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("kek_id", sa.String(40), nullable=False),
    sa.Column("wrapped", sa.LargeBinary),  # NULL once shredded
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("shredded_at", UtcDateTime),
)

documents = sa.Table(
    "documents",
    metadata,
    sa.Column("patient_id", ID, sa.ForeignKey("patients.id"), primary_key=True),
    sa.Column("id", ID, primary_key=True),  # entryUUID: changes with every metadata version
    sa.Column("logical_id", ID, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("unique_id", sa.String(128), nullable=False),  # masterIdentifier
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("type_code", sa.String(20), nullable=False),
    sa.Column("class_code", sa.String(20), nullable=False),
    sa.Column("format_code", sa.String(80), nullable=False),
    sa.Column("mime_type", sa.String(80), nullable=False),
    sa.Column("title", sa.String(250), nullable=False),
    sa.Column("language", sa.String(10), nullable=False),
    sa.Column("creation_time", UtcDateTime, nullable=False),
    sa.Column("service_start", UtcDateTime, nullable=False),
    sa.Column("service_stop", UtcDateTime),
    sa.Column("facility_type", sa.String(20)),
    sa.Column("practice_setting", sa.String(20)),
    sa.Column("facility_system", sa.String(120)),  # None: the national set's own system
    sa.Column("practice_system", sa.String(120)),
    sa.Column("author_kind", sa.String(20), nullable=False),
    sa.Column("author_id", sa.String(64), nullable=False),
    sa.Column("author_structure", sa.String(32)),
    sa.Column("confidentiality", sa.String(1), nullable=False),
    sa.Column("masked_ps", sa.Boolean, nullable=False),
    sa.Column("invisible_patient", sa.Boolean, nullable=False),
    sa.Column("invisible_patient_until", UtcDateTime),
    sa.Column("invisible_representatives", sa.Boolean, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("sha1", sa.String(40), nullable=False),
    sa.Column("content_id", ID, nullable=False),
    sa.Column("replaces_id", ID),
    sa.Column("appends_id", ID),  # the document this one is an addendum to (XDS APND)
    sa.Column("submitted_at", UtcDateTime, nullable=False),
    # True on the current metadata version; a metadata change (mask, archive...) adds a version.
    sa.Column("latest", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("version_at", UtcDateTime),  # when this metadata version was written
    sa.Index("ix_documents_patient_status_service", "patient_id", "status", "service_start"),
    sa.Index("ix_documents_patient_logical", "patient_id", "logical_id", "version"),
    sa.Index("ix_documents_patient_author_structure", "patient_id", "author_structure"),
    # One document per uniqueId in a record (its first version; later versions repeat it), and
    # one latest version per document: the database refuses a fork whatever the race.
    sa.Index(
        "ux_documents_patient_unique",
        "patient_id",
        "unique_id",
        unique=True,
        postgresql_where=sa.text("version = 1"),
        sqlite_where=sa.text("version = 1"),
    ),
    sa.Index(
        "ux_documents_patient_latest",
        "patient_id",
        "logical_id",
        unique=True,
        postgresql_where=sa.text("latest"),
        sqlite_where=sa.text("latest"),
    ),
)

document_contents = sa.Table(
    "document_contents",
    metadata,
    sa.Column("patient_id", ID, sa.ForeignKey("patients.id"), primary_key=True),
    sa.Column("content_id", ID, primary_key=True),
    # Content is sealed in chunks (256 KiB) so that it can be streamed without loading it whole.
    sa.Column("chunk", sa.Integer, primary_key=True, autoincrement=False, server_default="0"),
    sa.Column("key_id", sa.String(32), nullable=False),  # the patient data key that sealed it
    sa.Column("sealed", sa.LargeBinary, nullable=False),
)

# Audit trail: append-only, hash-chained per chain. A patient's events form the chain named by the
# patient id, so patients never wait on each other; events about no patient go to a chain named
# after the actor. ``audit_heads`` holds each chain's last sequence number and hash: its row lock
# orders concurrent writers of one chain, and it detects removal of the last event.
audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("chain_id", ID, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("event_id", ID, nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("patient_id", ID),
    sa.Column("actor_kind", sa.String(20), nullable=False),
    sa.Column("actor_id", sa.String(64), nullable=False),
    sa.Column("structure_id", sa.String(32)),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("target", sa.String(200)),
    sa.Column("targets", sa.Text),  # ids of the documents a search returned
    sa.Column("purpose", sa.String(20), nullable=False),
    sa.Column("outcome", sa.String(10), nullable=False),
    sa.Column("reason", sa.String(60), nullable=False),
    sa.Column("request_id", sa.String(64)),
    sa.Column("client_addr", sa.String(64)),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    # HMAC-SHA-256 of the event under the key ring's audit key ``key_id`` (plain SHA-256 for
    # events written before migration 0009, whose key_id is NULL).
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("key_id", sa.String(40)),
    # The software or app the access came through (a SMART client, an app the holder allowed);
    # NULL for the portals and commands. In the MAC only when set (events before 0019 verify).
    sa.Column("client_id", sa.String(64)),
)

audit_heads = sa.Table(
    "audit_heads",
    metadata,
    sa.Column("chain_id", ID, primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("last_hash", sa.String(64), nullable=False),
)


# -- adoption statistics: counters kept in the transaction of the event that changes them ------
# Not patient data: counts per département. The per-département row is the sequence that numbers
# record openings (its row lock makes milestones exact); document and access counters are spread
# over shards (summed when read) so concurrent publications do not queue on one row.

stats_departements = sa.Table(
    "stats_departements",
    metadata,
    sa.Column("departement", sa.String(3), primary_key=True),
    sa.Column("opened", sa.BigInteger, nullable=False),
    sa.Column("active", sa.BigInteger, nullable=False),
    sa.Column("closed", sa.BigInteger, nullable=False),
    sa.Column("activated", sa.BigInteger, nullable=False),
)

stats_openings = sa.Table(
    "stats_openings",
    metadata,
    sa.Column("departement", sa.String(3), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),  # YYYY-MM
    sa.Column("channel", sa.String(30), primary_key=True),
    sa.Column("structure_kind", sa.String(16), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)

# Records closed per département and month of closure (a reopening takes its closure back):
# with the openings, the records active at the end of each month.
stats_closures = sa.Table(
    "stats_closures",
    metadata,
    sa.Column("departement", sa.String(3), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)

stats_documents = sa.Table(
    "stats_documents",
    metadata,
    sa.Column("departement", sa.String(3), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("type_code", sa.String(20), primary_key=True),
    sa.Column("shard", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("count", sa.BigInteger, nullable=False),
)

stats_accesses = sa.Table(
    "stats_accesses",
    metadata,
    sa.Column("departement", sa.String(3), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("purpose", sa.String(20), primary_key=True),
    sa.Column("shard", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("count", sa.BigInteger, nullable=False),
)

# Document and access counts not yet folded into the counters above: one row per transaction,
# keyed by its patient (no shared row locked on the request path); the server folds them in the
# background, and reads add what is still pending (exact at every moment).
stats_pending = sa.Table(
    "stats_pending",
    metadata,
    sa.Column("patient_id", ID, primary_key=True),
    sa.Column("id", ID, primary_key=True),
    sa.Column("counter", sa.String(16), nullable=False),  # stats_documents | stats_accesses
    sa.Column("departement", sa.String(3), nullable=False),
    sa.Column("month", sa.String(7), nullable=False),
    sa.Column("code", sa.String(20), nullable=False),  # type code, or purpose of use
    sa.Column("count", sa.BigInteger, nullable=False),
)

milestones = sa.Table(
    "milestones",
    metadata,
    sa.Column("departement", sa.String(3), primary_key=True),
    sa.Column("threshold", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("reached_at", UtcDateTime, nullable=False),
    sa.Column("structure_id", sa.String(32)),
    sa.Column("channel", sa.String(30), nullable=False),
)

# -- FHIR API clients (SMART Backend Services) -------------------------------------------------

api_clients = sa.Table(
    "api_clients",
    metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("structure_id", sa.String(32), sa.ForeignKey("structures.id"), nullable=False),
    sa.Column("jwks", sa.Text, nullable=False),  # public keys only (JSON Web Key Set)
    sa.Column("scopes", sa.Text, nullable=False),  # space-separated scopes it may be granted
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime),
)

# Client-assertion ids already used (replay protection), kept until the assertion expires.
client_assertion_jtis = sa.Table(
    "client_assertion_jtis",
    metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("jti", sa.String(128), primary_key=True),
    sa.Column("expires_at", UtcDateTime, nullable=False),
)

# SubmissionSets and Folders (MHD Lists): the documents submitted together, or grouped.
document_lists = sa.Table(
    "document_lists",
    metadata,
    sa.Column("patient_id", ID, sa.ForeignKey("patients.id"), primary_key=True),
    sa.Column("id", ID, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # submissionset | folder
    sa.Column("unique_id", sa.String(128)),
    sa.Column("source_id", sa.String(128)),
    sa.Column("title", sa.String(250)),
    sa.Column("code", sa.String(40)),  # contentType (SubmissionSet) or code list (Folder)
    sa.Column("submitted_at", UtcDateTime, nullable=False),
    sa.Column("author_id", sa.String(64), nullable=False),
    sa.Column("author_structure", sa.String(32)),
    sa.Column("document_ids", sa.Text, nullable=False),  # space-separated logical ids
)

# The web portals' accounts (patient, legal representative, professional, registration desk):
# a password (argon2id) and a TOTP second factor, activated once with a printed code.
portal_accounts = sa.Table(
    "portal_accounts",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("login", sa.String(64), nullable=False, unique=True),
    sa.Column("kind", sa.String(20), nullable=False),  # an ActorKind
    sa.Column("patient_id", ID, sa.ForeignKey("patients.id")),  # patient and representative
    sa.Column("ins_oid", sa.String(40)),
    sa.Column("ins_value", sa.String(15)),
    sa.Column("structure_id", sa.String(32)),  # professional and desk
    sa.Column("password_hash", sa.String(200)),  # argon2id, set at activation
    sa.Column("totp_sealed", sa.LargeBinary),  # the TOTP secret, AES-GCM under the portal key
    sa.Column("totp_enabled_at", UtcDateTime),
    sa.Column("totp_last_step", sa.BigInteger),  # the last time step used: no code replays
    sa.Column("recovery_hashes", sa.Text),  # SHA-256 of the unused recovery codes
    sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", UtcDateTime),
    sa.Column("preferences", sa.Text),  # notification preferences (JSON)
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("activated_at", UtcDateTime),
    sa.Column("last_login_at", UtcDateTime),
)

# One-time activation codes: only their SHA-256 is stored; a code works once, until it expires.
activation_codes = sa.Table(
    "activation_codes",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("account_id", ID, sa.ForeignKey("portal_accounts.id"), nullable=False, index=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("used_at", UtcDateTime),
    # letter: printed at a desk (an account never activated); recovery: sent to the holder.
    sa.Column("purpose", sa.String(10), nullable=False, server_default="letter"),
)

# Server-side portal sessions: the cookie holds a random token, this table its SHA-256.
portal_sessions = sa.Table(
    "portal_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("account_id", ID, sa.ForeignKey("portal_accounts.id"), nullable=False, index=True),
    sa.Column("stage", sa.String(12), nullable=False),  # password | enrol | full
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("last_seen_at", UtcDateTime, nullable=False),
    sa.Column("data_sealed", sa.LargeBinary),  # the session's working state (sealed JSON)
)

# Failures and attempts counted for every process and node: per address, per account and
# source, per account; a key is blocked until ``blocked_until`` (back-off after failures).
auth_throttle = sa.Table(
    "auth_throttle",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),  # SHA-256 of the counted thing
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("window_start", UtcDateTime, nullable=False),
    sa.Column("blocked_until", UtcDateTime),
)

# Devices a portal account logged in from (a long-lived cookie's SHA-256): a stranger's
# failures on the account do not lock out a device the holder already used.
portal_devices = sa.Table(
    "portal_devices",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("account_id", ID, sa.ForeignKey("portal_accounts.id"), nullable=False, index=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("last_seen_at", UtcDateTime, nullable=False),
)

# The key ring that sealed this database: a MAC under the ring's own secret, written at the
# first start (or the first start after this table appeared). A server started with another
# ring refuses to run rather than MAC new audit events under the wrong key.
ring_seals = sa.Table(
    "ring_seals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # always 1: one ring per database
    sa.Column("proof", sa.String(64), nullable=False),
    sa.Column("sealed_at", UtcDateTime, nullable=False),
)

# A login started at an OpenID provider (Pro Santé Connect, FranceConnect): what the callback
# must find again (the nonce, the PKCE verifier), used once; the state's SHA-256 is the key.
oidc_logins = sa.Table(
    "oidc_logins",
    metadata,
    sa.Column("state_hash", sa.String(64), primary_key=True),
    sa.Column("provider", sa.String(20), nullable=False),
    sa.Column("nonce", sa.String(64), nullable=False),
    sa.Column("verifier", sa.String(128), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False, index=True),
)

# Apps of the catalogue that a holder may allow to read their record (SMART App Launch, public
# clients with PKCE): their redirect addresses and the scopes they may ask.
patient_apps = sa.Table(
    "patient_apps",
    metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("publisher", sa.String(200), nullable=False),
    sa.Column("redirect_uris", sa.Text, nullable=False),  # space-separated
    sa.Column("scopes", sa.Text, nullable=False),  # space-separated patient/ scopes
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime),
)

# What a holder (or their representative) allowed an app: its scopes, until revoked; the
# current refresh token's SHA-256 (rotated at each use) and the last access.
app_authorizations = sa.Table(
    "app_authorizations",
    metadata,
    sa.Column("patient_id", ID, sa.ForeignKey("patients.id"), primary_key=True),
    sa.Column("id", ID, primary_key=True),
    sa.Column("client_id", sa.String(64), sa.ForeignKey("patient_apps.client_id"), nullable=False),
    sa.Column("actor_kind", sa.String(20), nullable=False),  # patient | representative
    sa.Column("actor_id", sa.String(64), nullable=False),
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("granted_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime),
    sa.Column("last_access_at", UtcDateTime),
    sa.Column("refresh_hash", sa.String(64)),
    sa.Column("refresh_expires_at", UtcDateTime),
)

# One-time authorization codes (their SHA-256), bound to the app, its redirect address and the
# PKCE challenge; a minute to use.
app_codes = sa.Table(
    "app_codes",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("patient_id", ID, nullable=False),
    sa.Column("authorization_id", ID, nullable=False),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("redirect_uri", sa.Text, nullable=False),
    sa.Column("challenge", sa.String(128), nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("used_at", UtcDateTime),
)
