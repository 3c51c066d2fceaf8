"""Portal accounts, activation codes and sessions (storage only; the rules are in
``dmp.auth.portal``)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from dmp.records.schema import (
    activation_codes,
    oidc_logins,
    portal_accounts,
    portal_devices,
    portal_sessions,
)


@dataclass(frozen=True, slots=True)
class AccountRow:
    id: str
    login: str
    kind: str
    patient_id: str | None
    ins_oid: str | None
    ins_value: str | None
    structure_id: str | None
    password_hash: str | None
    totp_sealed: bytes | None
    totp_enabled_at: datetime | None
    totp_last_step: int | None
    recovery_hashes: str | None
    failed_logins: int
    locked_until: datetime | None
    preferences: str | None
    created_at: datetime
    activated_at: datetime | None
    last_login_at: datetime | None

    def notification_preferences(self) -> dict[str, Any]:
        """The stored notification preferences (channel, contact, per-kind choices); {} when
        none were set or the column holds something else than a JSON object."""
        try:
            value = json.loads(self.preferences) if self.preferences else {}
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class SessionRow:
    id_hash: str
    account_id: str
    stage: str
    csrf: str
    created_at: datetime
    last_seen_at: datetime
    data_sealed: bytes | None


def _account(row: sa.Row[Any] | None) -> AccountRow | None:
    return None if row is None else AccountRow(**row._mapping)


def account_by_login(conn: Connection, login: str) -> AccountRow | None:
    a = portal_accounts
    return _account(conn.execute(sa.select(a).where(a.c.login == login)).first())


def account_by_id(conn: Connection, account_id: str, *, lock: bool = False) -> AccountRow | None:
    a = portal_accounts
    query = sa.select(a).where(a.c.id == account_id)
    if lock:
        query = query.with_for_update()
    return _account(conn.execute(query).first())


def insert_account(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(portal_accounts.insert().values(**values))


def new_account(
    conn: Connection,
    *,
    login: str,
    kind: str,
    at: datetime,
    patient_id: str | None = None,
    ins: tuple[str, str] | None = None,
    structure_id: str | None = None,
) -> str:
    """A portal account without password yet; returns its id (IntegrityError: login taken)."""
    account_id = uuid.uuid4().hex
    insert_account(
        conn,
        {
            "id": account_id,
            "login": login,
            "kind": kind,
            "patient_id": patient_id,
            "ins_oid": ins[0] if ins else None,
            "ins_value": ins[1] if ins else None,
            "structure_id": structure_id,
            "created_at": at,
        },
    )
    return account_id


def update_account(conn: Connection, account_id: str, **values: Any) -> None:
    conn.execute(
        portal_accounts.update().where(portal_accounts.c.id == account_id).values(**values)
    )


def add_code(
    conn: Connection,
    code_hash: str,
    account_id: str,
    *,
    at: datetime,
    by: str,
    expires: datetime,
    purpose: str = "letter",
) -> None:
    """A new code for the account; every earlier unused code of it stops working."""
    c = activation_codes
    conn.execute(
        c.update()
        .where(c.c.account_id == account_id, c.c.used_at.is_(None), c.c.expires_at > at)
        .values(expires_at=at)
    )
    conn.execute(
        c.insert().values(
            code_hash=code_hash,
            account_id=account_id,
            created_at=at,
            created_by=by,
            expires_at=expires,
            purpose=purpose,
        )
    )


def live_code(
    conn: Connection, account_id: str, purpose: str, at: datetime
) -> tuple[datetime, str] | None:
    """The account's unused, unexpired code of this purpose: (created at, by whom)."""
    c = activation_codes
    row = conn.execute(
        sa.select(c.c.created_at, c.c.created_by)
        .where(
            c.c.account_id == account_id,
            c.c.purpose == purpose,
            c.c.used_at.is_(None),
            c.c.expires_at > at,
        )
        .order_by(c.c.created_at.desc())
        .limit(1)
    ).first()
    return None if row is None else (row.created_at, row.created_by)


def use_code(conn: Connection, code_hash: str, account_id: str, at: datetime) -> bool:
    """Spend a code: true only for the one request that finds it unused and unexpired."""
    c = activation_codes
    spent = conn.execute(
        c.update()
        .where(
            c.c.code_hash == code_hash,
            c.c.account_id == account_id,
            c.c.used_at.is_(None),
            c.c.expires_at > at,
        )
        .values(used_at=at)
    )
    return spent.rowcount == 1


def code_is_live(conn: Connection, code_hash: str, account_id: str, at: datetime) -> bool:
    c = activation_codes
    found = conn.execute(
        sa.select(c.c.code_hash).where(
            c.c.code_hash == code_hash,
            c.c.account_id == account_id,
            c.c.used_at.is_(None),
            c.c.expires_at > at,
        )
    ).first()
    return found is not None


def insert_session(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(portal_sessions.insert().values(**values))


def get_session(conn: Connection, id_hash: str) -> SessionRow | None:
    s = portal_sessions
    row = conn.execute(sa.select(s).where(s.c.id_hash == id_hash)).first()
    return None if row is None else SessionRow(**row._mapping)


def update_session(conn: Connection, id_hash: str, **values: Any) -> None:
    s = portal_sessions
    conn.execute(s.update().where(s.c.id_hash == id_hash).values(**values))


def delete_session(conn: Connection, id_hash: str) -> None:
    s = portal_sessions
    conn.execute(s.delete().where(s.c.id_hash == id_hash))


def delete_sessions_of(conn: Connection, account_id: str) -> None:
    s = portal_sessions
    conn.execute(s.delete().where(s.c.account_id == account_id))


def account_for_patient(conn: Connection, patient_id: str) -> AccountRow | None:
    a = portal_accounts
    return _account(
        conn.execute(
            sa.select(a).where(a.c.patient_id == patient_id, a.c.kind == "patient")
        ).first()
    )


def device_of(conn: Connection, token_hash: str) -> str | None:
    """The account a device token belongs to."""
    d = portal_devices
    found = conn.execute(sa.select(d.c.account_id).where(d.c.token_hash == token_hash)).scalar()
    return None if found is None else str(found)


def add_device(conn: Connection, token_hash: str, account_id: str, at: datetime) -> None:
    conn.execute(
        portal_devices.insert().values(
            token_hash=token_hash, account_id=account_id, created_at=at, last_seen_at=at
        )
    )


def touch_device(conn: Connection, token_hash: str, at: datetime) -> None:
    d = portal_devices
    conn.execute(d.update().where(d.c.token_hash == token_hash).values(last_seen_at=at))


def forget_devices(conn: Connection, account_id: str) -> None:
    d = portal_devices
    conn.execute(d.delete().where(d.c.account_id == account_id))


@dataclass(frozen=True, slots=True)
class PendingLogin:
    provider: str
    nonce: str
    verifier: str


def add_oidc_login(
    conn: Connection,
    state_hash: str,
    provider: str,
    nonce: str,
    verifier: str,
    *,
    at: datetime,
    expires: datetime,
) -> None:
    """A login sent to a provider; logins never finished are forgotten once expired."""
    conn.execute(oidc_logins.delete().where(oidc_logins.c.expires_at < at))
    conn.execute(
        oidc_logins.insert().values(
            state_hash=state_hash,
            provider=provider,
            nonce=nonce,
            verifier=verifier,
            created_at=at,
            expires_at=expires,
        )
    )


def take_oidc_login(
    conn: Connection, state_hash: str, provider: str, at: datetime
) -> PendingLogin | None:
    """The pending login this state names, used once: read and deleted in one transaction;
    of two concurrent callbacks with the same state only the one whose delete took the row
    gets it."""
    o = oidc_logins.c
    row = conn.execute(
        sa.select(o.provider, o.nonce, o.verifier, o.expires_at).where(o.state_hash == state_hash)
    ).first()
    if row is None:
        return None
    taken = conn.execute(oidc_logins.delete().where(o.state_hash == state_hash)).rowcount
    if taken != 1 or row.provider != provider or row.expires_at < at:
        return None
    return PendingLogin(row.provider, row.nonce, row.verifier)
