"""Apps the holder allows (SMART App Launch): allowing one, the list with each app's last
access, withdrawing one. The holder's controls, like a block or a consent: the holder or a
legal representative only, each change in the record's trail."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime

from dmp.access.kernel import PATIENT_READ, PATIENT_UPDATE, Kernel
from dmp.access.policy import Action
from dmp.domain.codes import AuditAction
from dmp.domain.ins import PatientRef
from dmp.errors import Forbidden, NotFound
from dmp.identity.actor import ActorKind
from dmp.records import apps


@dataclass(frozen=True, slots=True)
class AppAuthorization:
    """One app the holder (or a representative) allowed, as the portal lists it."""

    id: str
    client_id: str
    name: str
    publisher: str
    scopes: tuple[str, ...]
    granted_by: str  # patient | representative
    granted_at: datetime
    last_access_at: datetime | None
    withdrawn_at: datetime | None


@dataclass(frozen=True, slots=True)
class PendingCode:
    """The one-time code the token endpoint will exchange (its hash and what binds it)."""

    code_hash: str
    redirect_uri: str
    challenge: str
    expires_at: datetime


class AppActions(Kernel):
    def allow_app(
        self, ins: PatientRef, client_id: str, scopes: str, code: PendingCode
    ) -> tuple[str, str]:
        """The holder allows an app of the catalogue to read their record with ``scopes``
        (already narrowed by the authorization server): the authorization and its one-time
        code, in one transaction. Returns (record key, authorization id)."""
        self._holder_only()
        with self.act(
            ins,
            Action.MANAGE_RECORD,
            AuditAction.APP_ALLOW,
            need=PATIENT_UPDATE,
            target=client_id,
        ) as op:
            app = apps.get_app(op.conn, client_id)
            if app is None or app.revoked_at is not None:
                raise NotFound("this app is not in the catalogue")
            authorization_id = uuid.uuid4().hex
            now = self._rt.clock.now()
            apps.allow(
                op.conn,
                op.scope,
                authorization_id=authorization_id,
                client_id=client_id,
                actor_kind=self.actor.kind.value,
                actor_id=self.actor.id,
                scopes=scopes,
                at=now,
            )
            apps.add_code(
                op.conn,
                op.scope,
                code_hash=code.code_hash,
                authorization_id=authorization_id,
                client_id=client_id,
                redirect_uri=code.redirect_uri,
                challenge=code.challenge,
                expires_at=code.expires_at,
                at=now,
            )
            return op.scope.patient_id, authorization_id

    def allowed_apps(self, ins: PatientRef) -> list[AppAuthorization]:
        """The apps allowed on the record, live first then withdrawn, newest first."""
        self._holder_only()
        with self.act(ins, Action.MANAGE_RECORD, AuditAction.APP_LIST, need=PATIENT_READ) as op:
            found = apps.authorizations(op.conn, op.scope)
            catalogue = apps.apps_named(op.conn, {a.client_id for a in found})
        out = [
            AppAuthorization(
                a.id,
                a.client_id,
                catalogue[a.client_id].name if a.client_id in catalogue else a.client_id,
                catalogue[a.client_id].publisher if a.client_id in catalogue else "",
                tuple(a.scopes.split()),
                a.actor_kind,
                a.granted_at,
                a.last_access_at,
                a.revoked_at,
            )
            for a in found
        ]
        return sorted(out, key=lambda a: a.withdrawn_at is not None)

    def withdraw_app(self, ins: PatientRef, authorization_id: str) -> None:
        """The holder withdraws an app's authorization: its tokens stop working at their next
        request (the gate reads the authorization at every action)."""
        self._holder_only()
        self._end(ins, authorization_id)

    def end_app(self, ref: PatientRef, authorization_id: str) -> None:
        """The authorization server ends an authorization (a code or refresh token used twice,
        or the app's own revocation): a system step, in the record's trail like the holder's
        withdrawal. Nothing happens to one already ended."""
        if self.actor.kind is not ActorKind.SYSTEM:
            raise Forbidden("only the authorization server ends an app's authorization")
        with contextlib.suppress(NotFound):  # already ended: the attempt is in the trail
            self._end(ref, authorization_id)

    def _end(self, ref: PatientRef, authorization_id: str) -> None:
        """End a live authorization of the record, audited as an app.revoke that names the
        app; NotFound (audited as an attempt) when there is none live."""
        with self.act(
            ref,
            Action.MANAGE_RECORD,
            AuditAction.APP_REVOKE,
            need=PATIENT_UPDATE,
            target=authorization_id,
        ) as op:
            found = apps.get_authorization(op.conn, op.scope.patient_id, authorization_id)
            if found is None or not apps.revoke(
                op.conn, op.scope, authorization_id, self._rt.clock.now()
            ):
                raise NotFound("no live app authorization of this id on this record")
            op.audit_target(found.client_id)  # the history names the app

    def _holder_only(self) -> None:
        if self.actor.kind not in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE):
            raise Forbidden("only the holder or a legal representative allows an app")
