"""What the `dmp` command may do, and nothing else: named system jobs, and gates bound to named
system actors (or to an actor from the directory). The command never holds the runtime, the
engine or the key ring; every record it touches goes through the gate, audited."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dmp.access.audit import VerifyReport
from dmp.auth import actors
from dmp.config import Settings
from dmp.domain.codes import AuditAction, PurposeOfUse
from dmp.domain.ins import Ins, parse_ins
from dmp.identity.actor import Actor, ActorKind, system_actor
from dmp.jobs import directory, maintenance, notify, scheduler
from dmp.jobs.directory_import import ImportSummary
from dmp.records import outbox
from dmp.records.outbox import Notice
from dmp.runtime import Runtime
from dmp.stats import counters
from dmp.stats import figures as statistics

if TYPE_CHECKING:
    from dmp.access.record_access import RecordAccess
    from dmp.jobs.provisioning import Provisioning


class Operator:
    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    @classmethod
    @contextlib.contextmanager
    def start(cls, settings: Settings) -> Iterator[Operator]:
        rt = Runtime.start(settings)
        try:
            yield cls(rt)
        finally:
            rt.close()

    # -- gates ----------------------------------------------------------------------------

    def gate(self, job: str) -> RecordAccess:
        """A gate bound to the named system actor ``system:<job>``."""
        return self._rt.access(system_actor(job))

    def gate_as(self, actor: Actor) -> RecordAccess:
        """A gate bound to an actor from the directory (a desk opening a record)."""
        return self._rt.access(actor)

    def desk_actor(self, agent_id: str, structure_id: str) -> Actor:
        return actors.desk_actor(agent_id, structure_id)

    # -- jobs -----------------------------------------------------------------------------

    def verify_audit(self, workers: int | None = None) -> VerifyReport:
        return maintenance.verify_audit(self._rt, workers)

    def rotate_keys(self) -> tuple[str, int]:
        return maintenance.rotate_keys(self._rt)

    def import_professionals(
        self, path: Path, progress: Callable[[int], None] | None = None
    ) -> ImportSummary:
        return directory.import_professionals(self._rt, path, progress)

    def register_client(
        self, *, name: str, structure_id: str, jwks: dict[str, Any], scopes: frozenset[str] | None
    ) -> str:
        from dmp.jobs import clients  # (and JWT) loaded by the command that needs it

        return clients.register_client(
            self._rt, name=name, structure_id=structure_id, jwks=jwks, scopes=scopes
        )

    def register_app(
        self, *, name: str, publisher: str, redirect_uris: list[str], scopes: str
    ) -> str:
        """An app joins the catalogue of apps a holder may allow; returns its client id."""
        from dmp.auth.apps import AppServer

        return AppServer(self._rt).register(
            name=name, publisher=publisher, redirect_uris=redirect_uris, scopes=scopes
        )

    def apps(self) -> list[dict[str, Any]]:
        """The catalogue (public data): every app, withdrawn ones included."""
        from dmp.auth.apps import AppServer

        return [
            {
                "client_id": a.client_id,
                "name": a.name,
                "publisher": a.publisher,
                "redirect_uris": list(a.redirect_uris),
                "scopes": a.scopes,
                "withdrawn_at": a.revoked_at.isoformat() if a.revoked_at else None,
            }
            for a in AppServer(self._rt).catalogue()
        ]

    def withdraw_app(self, client_id: str) -> bool:
        """The app leaves the catalogue: no new authorization, no new token."""
        from dmp.auth.apps import AppServer

        return AppServer(self._rt).withdraw(client_id)

    def adoption(
        self, departements: list[str] | None, start: str | None, end: str | None
    ) -> statistics.AdoptionReport:
        return statistics.adoption(self._rt, departements, start, end)

    def snooping(self, *, html: bool = False) -> tuple[list[Any], int, str | None]:
        """The snooping report (traced): the professionals the thresholds single out, how
        many acted, and the report as a French page when asked."""
        from dmp.jobs import snooping

        patterns, acted = snooping.report(self._rt)
        page = snooping.as_html(patterns, acted, self._rt) if html else None
        return patterns, acted, page

    def verify_counters(self) -> list[str]:
        return counters.verify_counters(self._rt)

    def rebuild_counters(self) -> None:
        counters.rebuild_counters(self._rt)

    def invite(
        self,
        *,
        kind: ActorKind,
        login: str,
        structure_id: str | None = None,
        ins: Ins | None = None,
    ) -> tuple[str, datetime]:
        """A portal account for a professional, desk agent or representative, and its code."""
        from dmp.auth.portal import Portal  # loaded by the commands that need it

        if ins is not None:
            ins = parse_ins(ins.value, ins.oid, test_mode=self._rt.settings.test_mode)
        return Portal(self._rt).invite(
            kind=kind, login=login, by="system:operator", ins=ins, structure_id=structure_id
        )

    # -- notifications and timed jobs -------------------------------------------------------

    def run_jobs(self) -> scheduler.RunReport:
        return scheduler.run_once(self._rt, notify.worker_name())

    def run_worker(self, stop: threading.Event, interval: float) -> None:
        scheduler.run_forever(self._rt, notify.worker_name(), stop, interval)

    def notifications(self, *, failed: bool, limit: int) -> list[Notice]:
        """The outbox, newest due first: read through the gate's system action, so the
        listing is in the trail (it names notices of every patient)."""
        what = f"{'dead' if failed else 'all'}, up to {limit}"
        with self.gate("notifications").act_system(AuditAction.NOTICES_LIST, what) as op:
            return outbox.listing(op.conn, ("dead",) if failed else None, limit)

    def notification_counts(self) -> dict[str, int]:
        # Counts per status only: no notice, no patient.
        with self._rt.engine.connect() as conn:
            return outbox.counts(conn)

    def retry_notification(self, notice_id: str) -> bool:
        target = notice_id[:64]
        with self.gate("notifications").act_system(AuditAction.NOTICE_RETRY, target) as op:
            return outbox.retry(op.conn, notice_id, self._rt.clock.now())

    def provisioning(self) -> Provisioning:
        from dmp.jobs.provisioning import Provisioning

        return Provisioning(self._rt)

    def load_demo(self) -> list[str]:
        from dmp.jobs.demo import load_demo

        return load_demo(self._rt)

    def issue_token(
        self,
        *,
        professional: str | None = None,
        structure: str | None = None,
        patient: Ins | None = None,
        desk_agent: str | None = None,
        ttl: int | None = None,
        purpose: PurposeOfUse = PurposeOfUse.NORMAL,
        justification: str | None = None,
        bound_to: Ins | None = None,
    ) -> str:
        """A bearer token for one actor (operators and integration tests)."""
        if professional:
            actor = actors.professional_actor(self._rt, professional, structure)
        elif patient is not None:
            actor = actors.patient_actor(self._rt, patient)
        else:
            assert desk_agent and structure
            actor = actors.desk_actor(desk_agent, structure)
        return actors.token_for(
            self._rt, actor, ttl, purpose=purpose, justification=justification, patient=bound_to
        )
