"""What the record's events tell people: notices queued in the outbox in the transaction of the
event that causes them (issue 11). A notice carries kinds and ids only, never clinical content
or a document's title; ``dmp.jobs.notify`` decides at delivery whether it is still due and how
it is worded.

Kinds: ``first_access`` (a professional's first access to the record), ``emergency_access`` and
``regulation_access`` (to the holder and the registered GP), ``emergency_expired``,
``new_document``, ``night_access`` (a professional's access at night), ``distant_access`` (a
first access by a professional working in another region), ``document_pending_announcement``
(a document still hidden from the holder after two weeks), ``document_revealed`` (its
automatic reveal after a month), ``record_opened``, ``record_closed``, ``record_reopened``;
about the holder's online account: ``activation_letter`` (a desk printed a letter),
``account_recovery`` (carries a one-time code, sealed until it is delivered, then erased),
``account_reset`` (a new password was set with a code).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from dmp.access import codes
from dmp.crypto import envelope
from dmp.domain import alerts
from dmp.domain.codes import PurposeOfUse
from dmp.identity.actor import ActorKind
from dmp.records import audit_log, directory, patients

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from dmp.access.kernel import Kernel, Op
    from dmp.config import Settings
    from dmp.records.types import AuthorizedPatient

# AC-11 (R1111-53): the holder is told after two weeks that a document awaits an announcement;
# the document shows itself after a month.
PENDING_NOTICE = timedelta(days=14)
REVEAL_DELAY = timedelta(days=30)
# One night notice per professional and record within this time (one night).
NIGHT = timedelta(hours=12)


def queue(
    conn: Connection,
    scope: AuthorizedPatient,
    *kinds: str,
    now: datetime,
    subject_id: str | None = None,
    due: datetime | None = None,
    gp: str | None = None,
) -> None:
    """A notice of each kind to the holder (and, with ``gp``, to the registered GP), in one
    insert."""
    rows: list[dict[str, object]] = []
    for kind in kinds:
        rows.append({"kind": kind, "recipient_kind": "patient", "recipient_id": None})
        if gp:
            rows.append({"kind": kind, "recipient_kind": "medecin_traitant", "recipient_id": gp})
    patients.notify(
        conn,
        scope,
        [{**r, "subject_id": subject_id, "created_at": now, "due_at": due or now} for r in rows],
    )


def queue_code(
    conn: Connection,
    scope: AuthorizedPatient,
    kind: str,
    *,
    now: datetime,
    code: str,
    key: bytes,
    subject_id: str | None = None,
) -> None:
    """A notice to the holder that carries a one-time code: sealed, bound to this notice,
    opened only by the worker that delivers it (the row forgets it once sent)."""
    notice_id = uuid.uuid4().hex
    sealed = envelope.seal(key, code.encode(), codes.notice_context(scope.patient_id, notice_id))
    patients.notify(
        conn,
        scope,
        [
            {
                "id": notice_id,
                "kind": kind,
                "recipient_kind": "patient",
                "recipient_id": None,
                "subject_id": subject_id,
                "created_at": now,
                "due_at": now,
                "secret_sealed": sealed,
            }
        ],
    )


def night_watch_since(settings: Settings, purpose: PurposeOfUse, now: datetime) -> datetime | None:
    """At night, for a normal read, the start of the window within which the holder is told
    of a professional's night access once (``NIGHT``); None by day or for another purpose."""
    if purpose is not PurposeOfUse.NORMAL:
        return None
    if not alerts.is_night(now, settings.night_start_hour, settings.night_end_hour):
        return None
    return now - NIGHT


def on_professional_read(gate: Kernel, op: Op) -> None:
    """A professional read the record: their first access is told to the holder (and, if
    they work in another region than the patient's, a ``distant_access`` notice too); an
    access at night once per professional and night (``night_access``); every access by the
    regulation centre to the holder and the GP (an emergency access is told when its window
    opens, see ``emergency.open_window``). The holder's preferences decide at delivery which
    of these they hear of (the night and distance watches are off until they turn them on)."""
    if gate.actor.kind is not ActorKind.PROFESSIONAL:
        return
    now = gate.now()
    ps = gate.actor.id
    scope = op.scope
    settings = gate.settings
    # The facts said whether this professional read the record before: the row is written
    # (and the notice queued) only the first time; two first reads at once still queue one.
    first = not op.accessed_before
    # The facts said whether the holder was told of a night access by this professional (read
    # here if the facts did not ask: the night began between them and now); read again under
    # the chain head's lock below, only when none was found: two reads at one moment would
    # both find no notice and queue two.
    since = night_watch_since(settings, gate.purpose, now)
    night = since is not None and not (
        op.night_told
        if op.night_told is not None
        else patients.notice_since(op.conn, scope, "night_access", ps, since)
    )
    regulation = gate.purpose is PurposeOfUse.REGULATION
    if not (first or night or regulation):
        return  # nothing to write: a read of a professional who read the record before
    structure = gate.actor.structure_id
    gp = op.record.medecin_traitant

    def write(conn: Connection) -> None:
        if first and patients.first_access(conn, scope, ps, now):
            where = directory.structure_departement(conn, structure) if structure else None
            far = alerts.far_apart(scope.departement, where)
            kinds = ("first_access", "distant_access") if far else ("first_access",)
            queue(conn, scope, *kinds, now=now, subject_id=ps)  # one insert
        if night and since is not None:
            # The read takes the record's chain head (its audit event takes it anyway, at
            # the end) and looks again under it.
            audit_log.lock_head(conn, scope.patient_id)
            if not patients.notice_since(conn, scope, "night_access", ps, since):
                queue(conn, scope, "night_access", now=now, subject_id=ps)
        if regulation:
            queue(conn, scope, "regulation_access", now=now, subject_id=ps, gp=gp)

    # In the read's transaction, or (SQLite) in the group that commits its audit event.
    op.write(write)


def on_deposit(
    gate: Kernel, op: Op, logical_id: str, *, hidden_from_patient: bool, now: datetime
) -> None:
    """A document arrived: the holder hears of it now, or, if it is hidden pending an
    announcement, after two weeks (if still hidden) and at its reveal after a month. What the
    patient deposited themselves causes no notice."""
    if gate.actor.kind in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE):
        return
    if hidden_from_patient:
        queue(
            op.conn,
            op.scope,
            "document_pending_announcement",
            now=now,
            subject_id=logical_id,
            due=now + PENDING_NOTICE,
        )
        queue(
            op.conn,
            op.scope,
            "document_revealed",
            now=now,
            subject_id=logical_id,
            due=now + REVEAL_DELAY,
        )
    else:
        queue(op.conn, op.scope, "new_document", now=now, subject_id=logical_id)
