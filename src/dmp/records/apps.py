"""Apps a holder may allow (the catalogue), what each holder allowed, and the one-time
authorization codes (storage only; the rules are in ``dmp.access.apps`` and ``dmp.auth.apps``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from dmp.records.schema import (
    api_clients,
    app_authorizations,
    app_codes,
    patient_apps,
    patients,
)
from dmp.records.types import AuthorizedPatient


@dataclass(frozen=True, slots=True)
class AppRow:
    client_id: str
    name: str
    publisher: str
    redirect_uris: tuple[str, ...]
    scopes: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class AuthorizationRow:
    patient_id: str
    id: str
    client_id: str
    actor_kind: str
    actor_id: str
    scopes: str
    granted_at: datetime
    revoked_at: datetime | None
    last_access_at: datetime | None
    refresh_hash: str | None
    refresh_expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class CodeRow:
    patient_id: str
    authorization_id: str
    client_id: str
    redirect_uri: str
    challenge: str
    expires_at: datetime
    used_at: datetime | None


def _app(row: sa.Row[Any]) -> AppRow:
    m = row._mapping
    return AppRow(
        m["client_id"],
        m["name"],
        m["publisher"],
        tuple(m["redirect_uris"].split()),
        m["scopes"],
        m["created_at"],
        m["revoked_at"],
    )


def _authorization(row: sa.Row[Any]) -> AuthorizationRow:
    return AuthorizationRow(**{k: row._mapping[k] for k in AuthorizationRow.__slots__})


# -- the catalogue (public data) ---------------------------------------------------------------


def add_app(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(patient_apps.insert().values(**values))


def get_app(conn: Connection, client_id: str) -> AppRow | None:
    row = conn.execute(sa.select(patient_apps).where(patient_apps.c.client_id == client_id)).first()
    return None if row is None else _app(row)


def apps_named(conn: Connection, ids: set[str]) -> dict[str, AppRow]:
    """The catalogue's entries of these client ids (public data)."""
    if not ids:
        return {}
    rows = conn.execute(
        sa.select(patient_apps).where(patient_apps.c.client_id.in_(sorted(ids)))
    ).all()
    return {r.client_id: _app(r) for r in rows}


def list_apps(conn: Connection) -> list[AppRow]:
    rows = conn.execute(sa.select(patient_apps).order_by(patient_apps.c.name)).all()
    return [_app(r) for r in rows]


def withdraw_app(conn: Connection, client_id: str, at: datetime) -> bool:
    """The app leaves the catalogue: no new authorization, no new token (those allowed end)."""
    a = patient_apps.c
    done = conn.execute(
        patient_apps.update()
        .where(a.client_id == client_id, a.revoked_at.is_(None))
        .values(revoked_at=at)
    ).rowcount
    return bool(done)


def software_names(conn: Connection, ids: set[str]) -> dict[str, str]:
    """The names of the apps of the catalogue and of the structures' software these client
    ids name (public data), as the history says through what an access came."""
    if not ids:
        return {}
    wanted = sorted(ids)[:200]
    a, c = patient_apps.c, api_clients.c
    rows = conn.execute(
        sa.union_all(
            sa.select(a.client_id, a.name).where(a.client_id.in_(wanted)),
            sa.select(c.client_id, c.name).where(c.client_id.in_(wanted)),
        )
    ).all()
    return {r.client_id: r.name for r in rows}


# -- what a holder allowed (patient data: through the gate) -------------------------------------


def allow(
    conn: Connection,
    scope: AuthorizedPatient,
    *,
    authorization_id: str,
    client_id: str,
    actor_kind: str,
    actor_id: str,
    scopes: str,
    at: datetime,
) -> None:
    """A new authorization; one the same person gave the same app before ends (one live
    authorization per app and person)."""
    t = app_authorizations.c
    conn.execute(
        app_authorizations.update()
        .where(
            t.patient_id == scope.patient_id,
            t.client_id == client_id,
            t.actor_id == actor_id,
            t.revoked_at.is_(None),
        )
        .values(revoked_at=at, refresh_hash=None)
    )
    conn.execute(
        app_authorizations.insert().values(
            patient_id=scope.patient_id,
            id=authorization_id,
            client_id=client_id,
            actor_kind=actor_kind,
            actor_id=actor_id,
            scopes=scopes,
            granted_at=at,
        )
    )


def add_code(
    conn: Connection,
    scope: AuthorizedPatient,
    *,
    code_hash: str,
    authorization_id: str,
    client_id: str,
    redirect_uri: str,
    challenge: str,
    expires_at: datetime,
    at: datetime,
) -> None:
    """A one-time code; codes expired an hour ago are forgotten (an hour: a replay of a
    recently expired code is still recognised as one)."""
    conn.execute(app_codes.delete().where(app_codes.c.expires_at < at - timedelta(hours=1)))
    conn.execute(
        app_codes.insert().values(
            code_hash=code_hash,
            patient_id=scope.patient_id,
            authorization_id=authorization_id,
            client_id=client_id,
            redirect_uri=redirect_uri,
            challenge=challenge,
            expires_at=expires_at,
        )
    )


def authorizations(conn: Connection, scope: AuthorizedPatient) -> list[AuthorizationRow]:
    t = app_authorizations.c
    rows = conn.execute(
        sa.select(app_authorizations)
        .where(t.patient_id == scope.patient_id)
        .order_by(t.granted_at.desc())
    ).all()
    return [_authorization(r) for r in rows]


def revoke(conn: Connection, scope: AuthorizedPatient, authorization_id: str, at: datetime) -> bool:
    t = app_authorizations.c
    done = conn.execute(
        app_authorizations.update()
        .where(
            t.patient_id == scope.patient_id,
            t.id == authorization_id,
            t.revoked_at.is_(None),
        )
        .values(revoked_at=at, refresh_hash=None)
    ).rowcount
    return bool(done)


# -- the token endpoint (authentication: keys it was handed) ------------------------------------


def get_authorization(
    conn: Connection, patient_id: str, authorization_id: str
) -> AuthorizationRow | None:
    t = app_authorizations.c
    row = conn.execute(
        sa.select(app_authorizations).where(t.patient_id == patient_id, t.id == authorization_id)
    ).first()
    return None if row is None else _authorization(row)


def take_code(conn: Connection, code_hash: str, at: datetime) -> tuple[CodeRow | None, bool]:
    """The code this hash names and whether this call used it: of two concurrent exchanges of
    one code only one marks it used. (None, False) for an unknown code."""
    c = app_codes.c
    row = conn.execute(sa.select(app_codes).where(c.code_hash == code_hash)).first()
    if row is None:
        return None, False
    code = CodeRow(**{k: row._mapping[k] for k in CodeRow.__slots__})
    used = conn.execute(
        app_codes.update().where(c.code_hash == code_hash, c.used_at.is_(None)).values(used_at=at)
    ).rowcount
    return code, bool(used)


def rotate_refresh(
    conn: Connection,
    patient_id: str,
    authorization_id: str,
    *,
    old_hash: str | None,
    new_hash: str,
    expires_at: datetime,
    at: datetime,
) -> bool:
    """Replace the authorization's refresh token, only if it is still live and its current one
    is ``old_hash`` (None: the first, from a code): of two concurrent refreshes with one token
    only one wins."""
    t = app_authorizations.c
    current = t.refresh_hash.is_(None) if old_hash is None else t.refresh_hash == old_hash
    done = conn.execute(
        app_authorizations.update()
        .where(
            t.patient_id == patient_id,
            t.id == authorization_id,
            t.revoked_at.is_(None),
            current,
        )
        .values(refresh_hash=new_hash, refresh_expires_at=expires_at, last_access_at=at)
    ).rowcount
    return bool(done)


def touch(conn: Connection, patient_id: str, authorization_id: str, at: datetime) -> None:
    t = app_authorizations.c
    conn.execute(
        app_authorizations.update()
        .where(t.patient_id == patient_id, t.id == authorization_id)
        .values(last_access_at=at)
    )


def ins_of(conn: Connection, patient_id: str) -> tuple[str, str] | None:
    p = patients.c
    row = conn.execute(sa.select(p.ins_oid, p.ins_value).where(p.id == patient_id)).first()
    return None if row is None else (str(row.ins_oid), str(row.ins_value))
