"""Factories: plain functions that build test data through the access gate."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import sqlalchemy as sa

from dmp.access.views import Demographics, NewDocument
from dmp.auth import actors
from dmp.domain.codes import CreationChannel
from dmp.domain.ins import OID_TEST, Ins, make_ins_value
from dmp.identity.actor import Actor
from dmp.jobs import directory as directory_jobs
from dmp.runtime import Runtime

# Example material copied into the repository (sources and licences: tests/fixtures/SOURCES.md).
EXAMPLES = Path(__file__).resolve().parent / "fixtures"

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

PHARMACY = "390000000000017"
GP_PRACTICE = "C10000000025"
HOSPITAL = "1370000481"
NURSE_PRACTICE = "C10000000041"
GP = "810000000025"
CARDIOLOGIST = "810000000033"
NURSE = "810000000041"
PHARMACIST = "810000000017"
CARDIO_COLLEAGUE = "810000000066"  # same hospital as CARDIOLOGIST
OCCUPATIONAL_HEALTH = "C10000000058"  # an occupational health service (AC-16)
OCCUPATIONAL_DOCTOR = "810000000074"  # a physician working there


# -- factories (plain functions) --------------------------------------------------------------


def ins_for(i: int) -> Ins:
    """A valid INS under the test OID (fictional)."""
    matricule = f"{1 + i % 2}{80 + i % 20:02d}{(i % 12) + 1:02d}37003{i % 1000:03d}"
    return Ins(OID_TEST, make_ins_value(matricule))


def load_directory(rt: Runtime) -> None:
    now = rt.clock.now()
    structs: list[dict[str, object]] = [
        {
            "id": sid,
            "name": f"STRUCTURE {sid}",
            "finess": None,
            "siret": None,
            "sector_code": sector,
            "sector_label": None,
            "commune": "37003",
            "departement": "37",
            "updated_at": now,
        }
        for sid, sector in (
            (PHARMACY, "SA33"),
            (GP_PRACTICE, "SA07"),
            (HOSPITAL, "SA01"),
            (NURSE_PRACTICE, "SA07"),
            (OCCUPATIONAL_HEALTH, "SA-STRAV"),
        )
    ]
    rows = [
        (GP, "10", "SM54", GP_PRACTICE),
        (CARDIOLOGIST, "10", "SM04", HOSPITAL),
        (NURSE, "60", None, NURSE_PRACTICE),
        (PHARMACIST, "21", None, PHARMACY),
        (CARDIO_COLLEAGUE, "10", "SM04", HOSPITAL),
        (OCCUPATIONAL_DOCTOR, "10", "SM54", OCCUPATIONAL_HEALTH),
    ]
    pros: list[dict[str, object]] = [
        {
            "id_nat_ps": ps,
            "family_name": "TEST",
            "given_name": "PRO",
            "profession_code": prof,
            "profession_label": None,
            "specialty_code": spec,
            "specialty_label": None,
            "pharmacist_section": None,
            "updated_at": now,
        }
        for ps, prof, spec, _ in rows
    ]
    acts: list[dict[str, object]] = [
        {"id_nat_ps": ps, "structure_id": sid, "mode": None} for ps, _, _, sid in rows
    ]
    directory_jobs.store_directory(rt, pros, structs, acts)


def pro(rt: Runtime, id_nat_ps: str) -> Actor:
    return actors.professional_actor(rt, id_nat_ps)


def desk() -> Actor:
    return actors.desk_actor("desk-1", PHARMACY)


def demographics_for(ins: Ins, commune: str = "37003", **changes: object) -> Demographics:
    """A fictional identity that agrees with what the INS encodes (sex, birth year, month)."""
    sex = "M" if ins.value[0] in "1357" else "F"
    year = int(ins.value[1:3])
    month = int(ins.value[3:5])
    born = date(1900 + year if year > 26 else 2000 + year, month if 1 <= month <= 12 else 6, 17)
    demo = Demographics("EXEMPLE", "CAMILLE", sex, born, commune)
    return replace(demo, **changes)  # type: ignore[arg-type]


def open_record(rt: Runtime, ins: Ins, commune: str = "37003") -> None:
    rt.access(desk()).open_record(
        ins,
        demographics_for(ins, commune),
        channel=CreationChannel.PHARMACY,
        patient_consent=True,
    )


def new_document(
    at: datetime,
    *,
    type_code: str = "11488-4",
    title: str = "Compte rendu",
    masked_ps: bool = False,
    invisible_patient: bool = False,
) -> NewDocument:
    return NewDocument(
        type_code=type_code,
        format_code="urn:ihe:iti:xds-sd:text:2008",
        mime_type="text/plain",
        title=title,
        creation_time=at,
        service_start=at,
        masked_ps=masked_ps,
        invisible_patient=invisible_patient,
    )


def lift_audit_protection(engine: sa.Engine) -> None:
    """What an attacker with the database owner's rights can do: drop the append-only
    triggers, so that tampering tests can change stored events (and the chain must catch it)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events"))
        else:
            conn.execute(sa.text("DROP TRIGGER IF EXISTS audit_events_no_update"))
            conn.execute(sa.text("DROP TRIGGER IF EXISTS audit_events_no_delete"))
