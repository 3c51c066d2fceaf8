"""Emergency access (*bris de glace*, AC-8): the time-boxed window a justification opens."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from dmp.access import datakeys
from dmp.crypto import envelope
from dmp.domain.codes import AuditAction
from dmp.records import patients

if TYPE_CHECKING:
    from dmp.access.deps import GateDeps
    from dmp.access.kernel import Op
    from dmp.identity.actor import Actor


def open_window(rt: GateDeps, actor: Actor, justification: str | None, op: Op) -> None:
    """Open the window for this professional and patient (``DMP_EMERGENCY_DAYS``), with the
    justification stored encrypted, and queue the a-posteriori notices to the holder and the GP
    in the same transaction (R1111-48). Its own audit event precedes the action's."""
    assert justification is not None
    scope = op.scope
    now = rt.clock.now()
    until = now + timedelta(days=rt.settings.emergency_access_days)
    key_id, data_key = datakeys.data_key(rt, op.conn, scope, create=True)
    sealed = envelope.seal(
        data_key, justification.encode(), b"dmp-emergency:" + scope.patient_id.encode()
    )
    patients.open_emergency(
        op.conn,
        scope,
        actor.id,
        at=now,
        until=until,
        key_id=key_id,
        justification_sealed=sealed,
    )
    notices: list[dict[str, object]] = [
        {"kind": "emergency_access", "recipient_kind": "patient", "recipient_id": None}
    ]
    if op.record.medecin_traitant:
        notices.append(
            {
                "kind": "emergency_access",
                "recipient_kind": "medecin_traitant",
                "recipient_id": op.record.medecin_traitant,
            }
        )
    patients.notify(
        op.conn,
        scope,
        [{**n, "subject_id": actor.id, "created_at": now, "due_at": now} for n in notices],
    )
    # The holder is told when the window closes, too.
    patients.notify(
        op.conn,
        scope,
        [
            {
                "kind": "emergency_expired",
                "recipient_kind": "patient",
                "recipient_id": None,
                "subject_id": actor.id,
                "created_at": now,
                "due_at": until,
            }
        ],
    )
    op.audit_first(AuditAction.EMERGENCY_OPEN, actor.id)
