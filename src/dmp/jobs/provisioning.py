"""Opt-out provisioning, as records are opened in France today (issue 11): the insurer's
beneficiaries are imported as pending openings with the date they were informed; each may
object until ``DMP_OBJECTION_DAYS`` later (six weeks); after that, with no objection, the record
opens by itself (``dmp worker`` / ``dmp jobs run``, through the gate as the system actor
``system:insurer-provisioning``, channel ``insurer_provisioning``) and the holder is told.

Objecting needs the INS and the date of birth; the answer is the same whether or not they
matched someone (nobody learns who is listed)."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

from dmp.access.views import Demographics
from dmp.auth.throttle import OBJECTION_ADDRESS, Throttle
from dmp.domain.codes import SEXES, TRUSTED_THIRD_PARTY, AuditAction, CreationChannel
from dmp.domain.geo import departement_of_commune
from dmp.domain.ins import OID_NIR, Ins, identity_mismatches, parse_ins
from dmp.errors import Conflict, DmpError, InvalidInput
from dmp.identity.actor import system_actor
from dmp.records import provisioning

log = logging.getLogger("dmp.provisioning")

if TYPE_CHECKING:
    from dmp.runtime import Runtime

COLUMNS = ("ins", "nom", "prenoms", "sexe", "naissance", "commune", "informe_le")
OBJECTION_ANSWER = (
    "Si vous figurez parmi les personnes dont le dossier doit être ouvert, votre opposition "
    "est enregistrée : votre dossier ne sera pas ouvert."
)


@dataclass
class ImportReport:
    read: int = 0
    added: int = 0
    already: int = 0
    errors: list[str] = field(default_factory=list)


class Provisioning:
    """The import, the objection and the due openings (one per process)."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._throttle = Throttle(rt)

    def import_csv(self, text: str) -> ImportReport:
        """Beneficiaries as CSV (header ``ins,nom,prenoms,sexe,naissance,commune,informe_le``,
        an optional ``oid`` column, dates YYYY-MM-DD). Every valid line is imported; each bad
        line is reported by number and skipped; nothing already listed changes."""
        report = ImportReport()
        reader = csv.DictReader(io.StringIO(text))
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InvalidInput(f"the file lacks the column(s) {', '.join(missing)}")
        rows = []
        now = self._rt.clock.now()
        for n, line in enumerate(reader, start=2):
            report.read += 1
            try:
                rows.append(self._row(line, now))
            except (InvalidInput, ValueError) as exc:
                message = exc.message if isinstance(exc, DmpError) else str(exc)
                report.errors.append(f"line {n}: {message}")
        # The INS, names and birth dates are written through the gate's system action: the
        # import and its audit event commit together (issue 22: they were written unaudited).
        gate = self._rt.access(system_actor("insurer-provisioning"))
        with gate.act_system(AuditAction.PROVISIONING_IMPORT) as op:
            report.added = provisioning.add(op.conn, rows)
            op.target = f"{report.read} read, {report.added} added, {len(report.errors)} refused"
        report.already = len(rows) - report.added
        return report

    def _row(self, line: dict[str, str], now: datetime) -> dict[str, object]:
        ins = parse_ins(
            (line.get("ins") or "").strip(),
            (line.get("oid") or OID_NIR).strip(),
            test_mode=self._rt.settings.test_mode,
        )
        names = {k: (line.get(k) or "").strip().upper() for k in ("nom", "prenoms")}
        if not all(names.values()) or len(names["nom"]) > 100 or len(names["prenoms"]) > 200:
            raise InvalidInput("a name and given names are required")
        sex = (line.get("sexe") or "").strip().upper()
        if sex not in SEXES:
            raise InvalidInput("sexe must be M, F or U")
        commune = (line.get("commune") or "").strip()
        departement_of_commune(commune)
        born = date.fromisoformat((line.get("naissance") or "").strip())
        mismatches = identity_mismatches(
            ins, sex=sex, birth_year=born.year, birth_month=born.month, birth_place=None
        )
        if mismatches:
            raise InvalidInput(
                "the identity contradicts the INS: " + "; ".join(m.english for m in mismatches)
            )
        informed = datetime.combine(
            date.fromisoformat((line.get("informe_le") or "").strip()), time(0), UTC
        )
        if informed > now:
            raise InvalidInput("informe_le is in the future")
        return {
            "ins_oid": ins.oid,
            "ins_value": ins.value,
            "birth_family_name": names["nom"],
            "given_names": names["prenoms"],
            "sex": sex,
            "birth_date": born,
            "residence_commune": commune,
            "informed_at": informed,
            "objection_until": informed + timedelta(days=self._rt.settings.objection_days),
            "imported_at": now,
        }

    def object(self, ins: Ins, birth_date: date, address: str) -> str:
        """A person objects to the opening; the same answer whether they were listed or not."""
        self._throttle.hit(
            OBJECTION_ADDRESS,
            address,
            "trop de tentatives depuis cette adresse : réessayez plus tard",
        )
        try:
            ins = parse_ins(ins.value, ins.oid, test_mode=self._rt.settings.test_mode)
        except InvalidInput:
            return OBJECTION_ANSWER
        # Audited without naming anyone: the trail, like the answer, says nothing of who is
        # listed.
        gate = self._rt.access(system_actor("provisioning-objections"))
        with gate.act_system(AuditAction.PROVISIONING_OBJECTION) as op:
            provisioning.object_to(op.conn, ins.oid, ins.value, birth_date, self._rt.clock.now())
        return OBJECTION_ANSWER

    def counts(self) -> dict[str, int]:
        with self._rt.engine.connect() as conn:
            return provisioning.counts(conn)

    def open_due(self) -> int:
        """Open every record whose objection period ended without an objection."""
        gate = self._rt.access(system_actor("insurer-provisioning"))
        opened = 0
        while True:
            now = self._rt.clock.now()
            with self._rt.engine.connect() as conn:
                rows = provisioning.due(conn, now, 100)
            if not rows:
                return opened
            for row in rows:
                ins = Ins(str(row["ins_oid"]), str(row["ins_value"]))
                try:
                    gate.open_record(
                        ins,
                        Demographics(
                            str(row["birth_family_name"]),
                            str(row["given_names"]),
                            str(row["sex"]),
                            row["birth_date"],
                            str(row["residence_commune"]),
                        ),
                        channel=CreationChannel.INSURER_PROVISIONING,
                        # Opt-out: informed, and no objection within the period (L1111-14).
                        patient_consent=True,
                        # The insurer's file is a trusted third party: the identity is qualified.
                        identity_document=TRUSTED_THIRD_PARTY,
                    )
                    opened += 1
                except Conflict:
                    pass  # opened meanwhile at a desk: nothing to do
                except InvalidInput as exc:
                    # A line imported before identities were checked against the INS: it is
                    # not opened (and not retried); the operator sees it in the log.
                    log.warning("a provisioned identity was not opened: %s", exc.message)
                with self._rt.engine.begin() as conn:
                    provisioning.mark_opened(conn, ins.oid, ins.value, now)
