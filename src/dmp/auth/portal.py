"""Logging people into the web portals: activation with a printed code, a password (argon2id), a
second factor (TOTP, with recovery codes), server-side sessions, lockout and rate limits.

This is authentication, like the token endpoint: it ends in a :class:`Grant` for the person, and
every page then works through the gate bound to it (``Portal.gate``). It never reads or changes a
record itself, except through that gate (the holder's activation is the gate's
``activate_account``).

What a failure says never tells whether an identifier exists: an unknown identifier, a wrong
password, a wrong code and a locked account all get the same answer, after the same work.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyotp
import segno
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from dmp.access import codes
from dmp.access.audit import RequestContext
from dmp.access.kernel import PATIENT_UPDATE
from dmp.access.policy import Action
from dmp.auth import actors
from dmp.auth.throttle import LOGIN_ACCOUNT, LOGIN_SOURCE, PORTAL_ADDRESS, Throttle
from dmp.crypto import envelope
from dmp.domain import geo, text
from dmp.domain.codes import AuditAction, PurposeOfUse
from dmp.domain.french import PROFESSIONS
from dmp.domain.ins import Ins, spaced_ins
from dmp.errors import Conflict, InvalidInput, NotAuthenticated, NotFound
from dmp.identity.actor import Actor, ActorKind, system_actor
from dmp.identity.tokens import Grant
from dmp.records import apps, directory, patients, portal

if TYPE_CHECKING:
    from dmp.access.record_access import RecordAccess
    from dmp.runtime import Runtime

ISSUER = "DMP (démonstration)"
MIN_PASSWORD = 12
MAX_PASSWORD = 256
SESSION_MAX = timedelta(hours=12)
PRE_AUTH_MAX = timedelta(minutes=10)  # a half-finished login or activation
RECOVERY_CODES = 8
FAILED = "identifiant, mot de passe ou code incorrect (ou compte verrouillé quelques minutes)"
TOO_MANY = "trop de tentatives depuis cette adresse : réessayez plus tard"

# Stages of a session: the code checked (activation), the password set (TOTP enrolment), the
# password checked (second factor), and logged in.
ACTIVATE, ENROL, SECOND, FULL = "activate", "enrol", "second", "full"

_HASHER = PasswordHasher()  # argon2id, the library's current parameters (RFC 9106 low-memory)


@functools.cache
def _dummy_hash() -> str:
    """What an unknown identifier's password is checked against (the same work as a known
    one's); made on first use, not at import (every command would pay for it)."""
    return _HASHER.hash(secrets.token_hex(16))


@dataclass(frozen=True, slots=True)
class Session:
    """A portal session as the pages see it."""

    token: str
    account_id: str
    kind: ActorKind
    login: str
    stage: str
    csrf: str
    data: dict[str, Any] = field(default_factory=dict)
    # A new device token to keep in a long-lived cookie (set when a login completes on a
    # device the account had not used): a stranger's failures never lock that device out.
    device: str | None = None


@dataclass(frozen=True, slots=True)
class _Source:
    """Where a login attempt comes from, as the limits count it."""

    account_id: str
    key: str
    known_device: bool


@dataclass(frozen=True, slots=True)
class Enrolment:
    secret: str
    uri: str
    qr_svg: str


def login_id(typed: str) -> str:
    """The identifier as stored: an INS typed as printed on the letter or the Vitale card
    (1 23 45 67 890 123 45, or 2A / 2B for Corsica) is the same identifier without spaces."""
    value = typed.strip()[:80]
    if any(c.isdigit() for c in value) and all(
        c.isdigit() or c.isspace() or c in "ABab" for c in value
    ):
        value = "".join(value.split()).upper()
    return value[:64]


class Portal:
    """The portals' authentication service (one per process)."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._throttle = Throttle(rt)
        key_material = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"dmp portal sessions"
        ).derive(rt.token_secret)
        self._key = key_material

    @property
    def portal_url(self) -> str:
        """The portal's public address (``DMP_PORTAL_URL``), printed on letters."""
        return self._rt.settings.portal_url

    # -- accounts for representatives and professionals (operator) ---------------------------

    def invite(
        self,
        *,
        kind: ActorKind,
        login: str,
        by: str,
        ins: Ins | None = None,
        structure_id: str | None = None,
    ) -> tuple[str, datetime]:
        """An account for a professional, a desk agent or a legal representative, and its
        one-time activation code (the operator hands it over). A professional must be in the
        directory and work in the structure; a representative registered on the record."""
        login = login.strip()
        if not login or len(login) > 64:
            raise InvalidInput("an account identifier has 1 to 64 characters")
        now = self._rt.clock.now()
        if kind is ActorKind.REPRESENTATIVE:
            if ins is None:
                raise InvalidInput("name the record (INS) the representative acts on")
            # The record is read and the account made through the gate, as the system job
            # of invitations: the patient's trail says an account was made for their
            # representative (issue 22: this read the record unaudited).
            gate = self._rt.access(system_actor("portal-invite"))
            with gate.act(
                ins,
                Action.MANAGE_RECORD,
                AuditAction.REPRESENTATIVE_INVITE,
                need=PATIENT_UPDATE,
                target=login,
            ) as op:
                patient_id = op.scope.patient_id
                if login not in patients.representative_ids(op.conn, patient_id):
                    raise NotFound("register the representative on the record first")
                return self._invitation(op.conn, kind, login, by, now, patient_id, ins, None)
        if kind is ActorKind.PROFESSIONAL:
            actors.professional_actor(self._rt, login, structure_id)  # in the directory, there
        elif kind is not ActorKind.DESK_AGENT:
            raise InvalidInput("patients get their account from the activation letter")
        with self._rt.engine.begin() as conn:
            if kind is ActorKind.DESK_AGENT and (
                not structure_id or not directory.structure_exists(conn, structure_id)
            ):
                raise InvalidInput("a desk agent works for a structure of the directory")
            return self._invitation(conn, kind, login, by, now, None, None, structure_id)

    def _invitation(
        self,
        conn: Connection,
        kind: ActorKind,
        login: str,
        by: str,
        now: datetime,
        patient_id: str | None,
        ins: Ins | None,
        structure_id: str | None,
    ) -> tuple[str, datetime]:
        """The account (made on first invitation) and a new one-time activation code."""
        account = portal.account_by_login(conn, login)
        if account is None:
            try:
                account_id = portal.new_account(
                    conn,
                    login=login,
                    kind=kind.value,
                    at=now,
                    patient_id=patient_id,
                    ins=(ins.oid, ins.value) if ins else None,
                    structure_id=structure_id,
                )
            except IntegrityError:
                raise Conflict("this identifier is already taken") from None
        elif account.kind != kind.value:
            raise Conflict("this identifier belongs to another kind of account")
        else:
            account_id = account.id
        code = codes.new_code()
        expires = now + timedelta(days=self._rt.settings.activation_code_days)
        portal.add_code(conn, codes.code_hash(code), account_id, at=now, by=by, expires=expires)
        return code, expires

    # -- activation ----------------------------------------------------------------------

    def start_activation(
        self, login: str, code: str, address: str, device: str | None = None
    ) -> Session:
        """The identifier and a one-time code (a desk's letter, or a recovery code sent to the
        holder): a short session to choose a password. Nothing changes on the account until
        the password is set: the holder's password and sessions keep working."""
        self._throttle.hit(PORTAL_ADDRESS, address, TOO_MANY)
        now = self._rt.clock.now()
        with self._reading() as conn:
            account = portal.account_by_login(conn, login_id(login))
            live = account is not None and portal.code_is_live(
                conn, codes.code_hash(code), account.id, now
            )
        source = self._source(account, address, device) if account is not None else None
        if account is not None and source is not None and not self._held_back(source):
            if live:
                with self._rt.engine.begin() as conn:
                    return self._new_session(
                        conn, account, ACTIVATE, {"code_hash": codes.code_hash(code)}, now
                    )
            self._failed(source)
        raise NotAuthenticated("identifiant ou code d'activation incorrect ou expiré")

    def set_password(self, session: Session, password: str, confirm: str) -> Session:
        """Choose the password: the code is spent here, in the same transaction."""
        _check_password(password, confirm, session.login)
        self._need(session, ACTIVATE)
        now = self._rt.clock.now()
        hashed = _HASHER.hash(password)
        secret = pyotp.random_base32()
        with self._rt.engine.begin() as conn:
            before = portal.account_by_id(conn, session.account_id, lock=True)
            if before is None or not portal.use_code(
                conn, session.data["code_hash"], session.account_id, now
            ):
                portal.delete_session(conn, _hash(session.token))
                raise NotAuthenticated("ce code d'activation a déjà servi ou a expiré")
            portal.update_account(
                conn,
                session.account_id,
                password_hash=hashed,
                totp_sealed=None,
                totp_enabled_at=None,
                totp_last_step=None,
                recovery_hashes=None,
            )
            # Every other session of the account ends: a new password, a new start; and no
            # device it knew is trusted any more.
            portal.delete_sessions_of(conn, session.account_id)
            portal.forget_devices(conn, session.account_id)
            account = portal.account_by_id(conn, session.account_id)
            assert account is not None
            enrol = self._new_session(conn, account, ENROL, {"totp": secret}, now)
        if before.password_hash is not None and account.kind == ActorKind.PATIENT.value:
            # A reset, not a first activation: in the holder's trail, and the holder is told.
            self._rt.access(system_actor("portal")).record_account_reset(_account_ins(account))
        return enrol

    def enrolment(self, session: Session) -> Enrolment:
        """The TOTP secret to enrol, as a URI and a QR code (SVG, drawn here)."""
        self._need(session, ENROL)
        secret = str(session.data["totp"])
        uri = pyotp.TOTP(secret).provisioning_uri(name=session.login, issuer_name=ISSUER)
        qr = segno.make(uri, error="m")
        svg = qr.svg_inline(scale=5, dark="#000", light="#fff", title="QR code TOTP")
        return Enrolment(secret, uri, svg)

    def confirm_enrolment(self, session: Session, code: str) -> tuple[Session, list[str]]:
        """The first TOTP code proves the enrolment: the account is active, and the recovery
        codes are shown once. A holder's activation is counted (the gate's activate_account)."""
        self._need(session, ENROL)
        now = self._rt.clock.now()
        secret = str(session.data["totp"])
        step = _totp_step(secret, code, now, None)
        if step is None:
            raise InvalidInput("ce code ne correspond pas : saisissez le code à 6 chiffres affiché")
        recovery = [codes.new_code(groups=2, size=5) for _ in range(RECOVERY_CODES)]
        data = self._actor_data(self._account(session.account_id))
        with self._rt.engine.begin() as conn:
            portal.update_account(
                conn,
                session.account_id,
                totp_sealed=envelope.seal(self._key, secret.encode(), _totp_context(session)),
                totp_enabled_at=now,
                totp_last_step=step,
                recovery_hashes=" ".join(codes.code_hash(c) for c in recovery),
                activated_at=now,
                last_login_at=now,
            )
            account = portal.account_by_id(conn, session.account_id)
            assert account is not None
            portal.delete_session(conn, _hash(session.token))
            full = self._new_session(conn, account, FULL, data, now)
            full = replace(full, device=self._remember_device(conn, account.id, None, now))
        if account.kind == ActorKind.PATIENT.value:
            self.gate(full).activate_account(_account_ins(account))
        return full, recovery

    # -- login ---------------------------------------------------------------------------

    def login(self, login: str, password: str, address: str, device: str | None = None) -> Session:
        """The password: a short session waiting for the second factor. ``device``: the
        device cookie, if the browser has one."""
        self._throttle.hit(PORTAL_ADDRESS, address, TOO_MANY)
        now = self._rt.clock.now()
        with self._reading() as conn:
            account = portal.account_by_login(conn, login_id(login))
        stored = account.password_hash if account is not None else None
        good = _verify_password(stored or _dummy_hash(), password[:MAX_PASSWORD])
        if account is None:
            raise NotAuthenticated(FAILED)
        source = self._source(account, address, device)
        if self._held_back(source):
            raise NotAuthenticated(FAILED)
        if stored is not None and account.totp_enabled_at is not None and good:
            with self._rt.engine.begin() as conn:
                if _HASHER.check_needs_rehash(stored):
                    portal.update_account(conn, account.id, password_hash=_HASHER.hash(password))
                return self._new_session(conn, account, SECOND, {}, now)
        self._failed(source)
        raise NotAuthenticated(FAILED)

    def second_factor(
        self, session: Session, code: str, address: str, device: str | None = None
    ) -> Session:
        """The TOTP code (or one recovery code, which is then spent): the session is renewed
        under a new token and logged in."""
        self._throttle.hit(PORTAL_ADDRESS, address, TOO_MANY)
        self._need(session, SECOND)
        now = self._rt.clock.now()
        account = self._account(session.account_id)
        source = self._source(account, address, device)
        if self._held_back(source):
            raise NotAuthenticated(FAILED)
        data = self._actor_data(account)  # before the write lock
        with self._rt.engine.begin() as conn:
            locked = portal.account_by_id(conn, session.account_id, lock=True)
            if locked is None or locked.totp_sealed is None:
                raise NotAuthenticated(FAILED)
            account = locked
            secret = envelope.open_sealed(
                self._key, locked.totp_sealed, _totp_context(session)
            ).decode()
            step = _totp_step(secret, code, now, account.totp_last_step)
            changes: dict[str, Any] = {}
            left = (account.recovery_hashes or "").split()
            wanted = codes.code_hash(code)
            if step is not None:
                changes["totp_last_step"] = step
            elif wanted in left:
                left.remove(wanted)  # a recovery code works once
                changes["recovery_hashes"] = " ".join(left)
            if changes:
                portal.update_account(conn, account.id, last_login_at=now, **changes)
                portal.delete_session(conn, _hash(session.token))
                full = self._new_session(conn, account, FULL, data, now)
                known = device if source.known_device else None
                full = replace(full, device=self._remember_device(conn, account.id, known, now))
        if changes:
            self._throttle.clear(LOGIN_SOURCE, source.key)
            return full
        self._failed(source)
        raise NotAuthenticated(FAILED)

    def external_session(self, account_id: str, extra: dict[str, Any]) -> Session:
        """A session logged in by an identity provider (``dmp.auth.external``), which did the
        authentication: the account's actor as a password login would give it, plus what the
        provider's login adds (which provider, the ID token for the logout there, the actor a
        professional's login chose). A new token: nothing fixed before carries over."""
        now = self._rt.clock.now()
        account = self._account(account_id)
        data = {**self._actor_data(account), **extra}
        with self._rt.engine.begin() as conn:
            portal.update_account(conn, account.id, last_login_at=now)
            return self._new_session(conn, account, FULL, data, now)

    def logout(self, token: str) -> None:
        with self._rt.engine.begin() as conn:
            portal.delete_session(conn, _hash(token))

    # -- sessions ------------------------------------------------------------------------

    def session(self, token: str | None) -> Session | None:
        """The live session this cookie names, or None (unknown, idle too long, too old)."""
        if not token or len(token) > 100:
            return None
        now = self._rt.clock.now()
        idle = timedelta(minutes=self._rt.settings.portal_idle_minutes)
        with self._reading() as conn:
            row = portal.get_session(conn, _hash(token))
            account = portal.account_by_id(conn, row.account_id) if row is not None else None
        if row is None or account is None:
            return None
        limit = SESSION_MAX if row.stage == FULL else PRE_AUTH_MAX
        if now - row.last_seen_at > idle or now - row.created_at > limit:
            with self._rt.engine.begin() as conn:
                portal.delete_session(conn, row.id_hash)
            return None
        if now - row.last_seen_at > timedelta(seconds=30):  # one write a minute at most
            with self._rt.engine.begin() as conn:
                portal.update_session(conn, row.id_hash, last_seen_at=now)
        data = self._open_data(row.data_sealed, row.id_hash)
        return Session(
            token, account.id, ActorKind(account.kind), account.login, row.stage, row.csrf, data
        )

    def update_data(self, session: Session, **changes: Any) -> Session:
        """Change the session's working state (the patient a professional works on...)."""
        data = {**session.data, **changes}
        data = {k: v for k, v in data.items() if v is not None}
        with self._rt.engine.begin() as conn:
            portal.update_session(
                conn, _hash(session.token), data_sealed=self._seal_data(data, _hash(session.token))
            )
        return Session(
            session.token,
            session.account_id,
            session.kind,
            session.login,
            session.stage,
            session.csrf,
            data,
        )

    def preferences(self, session: Session) -> dict[str, Any]:
        with self._reading() as conn:
            account = portal.account_by_id(conn, session.account_id)
        return {} if account is None else account.notification_preferences()

    def set_preferences(self, session: Session, prefs: dict[str, Any]) -> None:
        """The notification preferences; the contact is checked for its channel (an e-mail
        address, a phone number) and holds no control character (it ends in a header)."""
        self._need(session, FULL)
        prefs = {**prefs}
        prefs["contact"] = text.contact(
            str(prefs.get("canal", "courriel")), str(prefs.get("contact", ""))
        )
        with self._rt.engine.begin() as conn:
            portal.update_account(conn, session.account_id, preferences=json.dumps(prefs))

    def structure_names(self, ids: set[str]) -> dict[str, str]:
        """Names of structures (public directory data) for the pages."""
        with self._reading() as conn:
            return directory.structure_names(conn, ids)

    def structure_place(self, structure_id: str | None) -> tuple[str, str | None] | None:
        """A structure's name and the name of its commune (public directory data)."""
        if not structure_id:
            return None
        with self._reading() as conn:
            found = directory.structure_place(conn, structure_id)
        return None if found is None else (found[0], geo.commune_name(found[1]))

    def software_names(self, ids: set[str]) -> dict[str, str]:
        """Names of the apps and structures' software an access came through (public)."""
        with self._reading() as conn:
            return apps.software_names(conn, ids)

    def people(self, ids: set[str]) -> dict[str, tuple[str, str | None]]:
        """Professionals' names and professions (public directory data)."""
        out: dict[str, tuple[str, str | None]] = {}
        with self._reading() as conn:
            for ps in sorted(ids)[:200]:
                found = directory.get_professional(conn, ps)
                if found is not None:
                    out[ps] = (f"{found.given_name} {found.family_name}", found.profession_code)
        return out

    # -- the gate ------------------------------------------------------------------------

    def grant(
        self,
        session: Session,
        *,
        purpose: PurposeOfUse = PurposeOfUse.NORMAL,
        justification: str | None = None,
        patient: Ins | None = None,
    ) -> Grant:
        """The logged-in person's grant: their actor as the session recorded it at login (a
        professional's from the directory), the access mode they chose for this request."""
        self._need(session, FULL)
        d = session.data
        ins = Ins(d["ins_oid"], d["ins_value"]) if d.get("ins_value") else None
        actor = Actor(
            kind=session.kind,
            id=str(d["actor_id"]),
            structure_id=d.get("structure_id"),
            profession=d.get("profession"),
            specialty=d.get("specialty"),
            pharmacist_section=d.get("section"),
            structure_kind=d.get("structure_kind"),
            ins=ins,
        )
        return Grant(actor, purpose=purpose, justification=justification, patient=patient)

    def gate(
        self,
        session: Session,
        ctx: RequestContext | None = None,
        *,
        purpose: PurposeOfUse = PurposeOfUse.NORMAL,
        justification: str | None = None,
        patient: Ins | None = None,
    ) -> RecordAccess:
        grant = self.grant(session, purpose=purpose, justification=justification, patient=patient)
        return self._rt.gate(grant, ctx)

    # -- inside --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A read that takes no write lock (SQLite: a deferred transaction)."""
        with self._rt.engine.connect() as conn:
            conn = conn.execution_options(dmp_readonly=True)
            with conn.begin():
                yield conn

    def _account(self, account_id: str) -> portal.AccountRow:
        with self._reading() as conn:
            account = portal.account_by_id(conn, account_id)
        if account is None:
            raise NotAuthenticated(FAILED)
        return account

    def _actor_data(self, account: portal.AccountRow) -> dict[str, Any]:
        kind = ActorKind(account.kind)
        if kind is ActorKind.PATIENT:
            ins = _account_ins(account)
            return {
                "actor_id": actors.patient_actor(self._rt, ins).id,
                "ins_oid": ins.oid,
                "ins_value": ins.value,
                "display": f"titulaire du dossier, INS {spaced_ins(ins.value)}",
            }
        if kind is ActorKind.REPRESENTATIVE:
            ins = _account_ins(account)
            return {
                "actor_id": account.login,
                "ins_oid": ins.oid,
                "ins_value": ins.value,
                "display": f"représentant légal ({account.login}) du titulaire de l'INS "
                f"{spaced_ins(ins.value)}",
            }
        if kind is ActorKind.PROFESSIONAL:
            a = actors.professional_actor(self._rt, account.login, account.structure_id)
            return {
                "display": self._display_professional(a.id, a.profession, a.structure_id),
                "actor_id": a.id,
                "structure_id": a.structure_id,
                "profession": a.profession,
                "specialty": a.specialty,
                "section": a.pharmacist_section,
                "structure_kind": a.structure_kind,
            }
        assert account.structure_id is not None
        place = self.structure_names({account.structure_id}).get(account.structure_id)
        return {
            "actor_id": account.login,
            "structure_id": account.structure_id,
            "display": f"guichet d'accueil ({account.login}){f', {place}' if place else ''}",
        }

    def _display_professional(
        self, id_nat_ps: str, profession: str | None, structure_id: str | None
    ) -> str:
        """Who is logged in, as the header shows it: name, profession, structure."""
        name = self.people({id_nat_ps}).get(id_nat_ps, (id_nat_ps, None))[0]
        parts = [name, PROFESSIONS.get(profession or "", "professionnel de santé")]
        if structure_id:
            place = self.structure_names({structure_id}).get(structure_id)
            if place:
                parts.append(place)
        return ", ".join(parts)

    def _new_session(
        self,
        conn: Any,
        account: portal.AccountRow,
        stage: str,
        data: dict[str, Any],
        now: datetime,
    ) -> Session:
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        portal.insert_session(
            conn,
            {
                "id_hash": _hash(token),
                "account_id": account.id,
                "stage": stage,
                "csrf": csrf,
                "created_at": now,
                "last_seen_at": now,
                "data_sealed": self._seal_data(data, _hash(token)),
            },
        )
        return Session(token, account.id, ActorKind(account.kind), account.login, stage, csrf, data)

    def _source(self, account: portal.AccountRow, address: str, device: str | None) -> _Source:
        """What an attempt is counted against, read once per attempt: the account and the
        device the holder already used (a known device), else the account and the address."""
        if device and len(device) <= 100:
            with self._reading() as conn:
                if portal.device_of(conn, _hash(device)) == account.id:
                    return _Source(account.id, f"{account.id}:device:{_hash(device)}", True)
        return _Source(account.id, f"{account.id}:address:{address}", False)

    def _held_back(self, source: _Source) -> bool:
        """Whether this source is blocked on this account: its own failures, or (for a device
        the account never used) the failures of every source together."""
        if self._throttle.blocked(LOGIN_SOURCE, source.key):
            return True
        if source.known_device:
            return False
        return self._throttle.blocked(LOGIN_ACCOUNT, source.account_id) is not None

    def _failed(self, source: _Source) -> None:
        """One failure: counted for this source, and account-wide for unknown devices."""
        self._throttle.failure(LOGIN_SOURCE, source.key)
        if not source.known_device:
            self._throttle.failure(LOGIN_ACCOUNT, source.account_id)

    def _remember_device(
        self, conn: Connection, account_id: str, known: str | None, now: datetime
    ) -> str | None:
        """After a complete login: the device token the account already knows (``known``) is
        seen again; otherwise a new device token (for the cookie)."""
        if known is not None:
            portal.touch_device(conn, _hash(known), now)
            return None
        token = secrets.token_urlsafe(32)
        portal.add_device(conn, _hash(token), account_id, now)
        return token

    @staticmethod
    def _need(session: Session, stage: str) -> None:
        if session.stage != stage:
            raise NotAuthenticated(
                "cette étape n'est pas celle de votre session : reconnectez-vous"
            )

    def _seal_data(self, data: dict[str, Any], id_hash: str) -> bytes:
        return envelope.seal(
            self._key, json.dumps(data).encode(), b"portal-session:" + id_hash.encode()
        )

    def _open_data(self, sealed: bytes | None, id_hash: str) -> dict[str, Any]:
        if not sealed:
            return {}
        value = json.loads(
            envelope.open_sealed(self._key, sealed, b"portal-session:" + id_hash.encode())
        )
        return value if isinstance(value, dict) else {}


_hash = codes.token_hash


def _totp_context(session: Session) -> bytes:
    return b"portal-totp:" + session.account_id.encode()


def _account_ins(account: portal.AccountRow) -> Ins:
    assert account.ins_oid is not None and account.ins_value is not None
    return Ins(account.ins_oid, account.ins_value)


def _verify_password(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _check_password(password: str, confirm: str, login: str) -> None:
    if not hmac.compare_digest(password.encode(), confirm.encode()):
        raise InvalidInput("les deux mots de passe saisis sont différents")
    if len(password) < MIN_PASSWORD or len(password) > MAX_PASSWORD:
        raise InvalidInput(
            f"le mot de passe doit compter entre {MIN_PASSWORD} et {MAX_PASSWORD} caractères"
        )
    if login and login.lower() in password.lower():
        raise InvalidInput("le mot de passe ne doit pas contenir votre identifiant")
    if len(set(password)) < 5:
        raise InvalidInput("le mot de passe est trop simple : variez les caractères")


def _totp_step(secret: str, code: str, now: datetime, last_step: int | None) -> int | None:
    """The time step a 6-digit code matches (now, or one step either side for clock drift),
    never one already used (no replay)."""
    code = "".join(ch for ch in code if ch.isdigit())
    if len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // totp.interval
    for step in (current, current - 1, current + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(totp.at(step * totp.interval), code):
            return step
    return None
