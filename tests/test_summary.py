"""The summary of care: read line by line from structured CDA documents (fixtures in the CI-SIS
structure, tests/summary_fixtures.py), de-duplicated across documents with every source named,
built inside the gate from the documents the reader may see (a masked, hidden or unreadable-by-
profession document never feeds it), and shown on the portals, in the PDF and as an IPS
``Patient/$summary`` Bundle."""

from __future__ import annotations

import dataclasses
import html
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pypdf
import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle

from dmp.access.views import CareSummary
from dmp.app import create_app
from dmp.auth import actors
from dmp.clock import FixedClock
from dmp.domain.ins import Ins
from dmp.domain.summary import Entry, extract
from dmp.runtime import Runtime
from tests import summary_fixtures as fx
from tests.cda_fixtures import CDA_PATIENT, cda_document
from tests.factories import GP, NURSE, PHARMACIST, new_document, open_record, pro
from tests.fhir_helpers import bearer
from tests.portal_helpers import activate, get, post_form

INS = Ins(*CDA_PATIENT)
TODAY = date(2026, 12, 3)
C = {"cim": fx.CIM10, "cis": fx.CIS, "atc": fx.ATC, "loinc": fx.LOINC}


def _doc(name: str, sections: str) -> bytes:
    return cda_document(name, sections=sections)


def test_the_medical_summary_reads_line_by_line() -> None:
    assert extract(_doc("medical-summary", fx.VSM), TODAY) == [
        Entry("problem", fx.DIABETES[1], "", "2018-03-01", (fx.CIM10, "E11.9")),
        Entry(
            "allergy", "Amoxicilline", "allergie médicamenteuse", "2015-06-10", (fx.ATC, "J01CA04")
        ),
        Entry(
            "treatment",
            fx.METFORMIN[1],
            "1 comprimé(s) par jour, voie orale",
            "2018-03-01",
            (fx.CIS, "60000101"),
        ),
    ]  # not the negated hypertension, the appendicitis of the history, the ended antibiotic


def test_the_vaccination_note_reads_line_by_line() -> None:
    assert extract(_doc("vaccinations", fx.VAC), TODAY) == [
        Entry(
            "vaccination",
            fx.DTCP[1],
            "Diphtérie-tétanos-coqueluche-poliomyélite, lot L-2021",
            "2021-04-09",
            (fx.CIS, "60000202"),
        ),
        Entry(
            "vaccination",
            fx.BCG[1],
            "Vaccin BCG vivant atténué, lot L-1990",
            "1990",
            (fx.CIS, "60000303"),
        ),
    ]  # not the refused one


def test_the_patient_summary_and_the_lab_report_read_line_by_line() -> None:
    ips = extract(_doc("patient-summary", fx.IPS), TODAY)
    assert [(e.kind, e.label, e.detail, e.on) for e in ips] == [
        ("allergy", "Amoxicilline", "allergie médicamenteuse", "2015-06-10"),
        ("treatment", fx.METFORMIN[1], "1 comprimé(s) par jour, voie orale", "2018-03-01"),
        ("problem", fx.DIABETES[1], "", "2018-03-01"),
        ("result", fx.HBA1C[1], "6.8 %", "2024-01-14"),
    ]
    bio = extract(_doc("lab-report", fx.BIO), TODAY)
    assert [(e.label, e.detail, e.on) for e in bio] == [
        (fx.HBA1C[1], "7.1 %", "2024-01-10"),
        ("Glucose [Masse/Volume] Sérum/Plasma ; Numérique", "1.32 g/L", "2024-01-10"),
    ]


def test_a_treatment_ended_today_still_counts_and_one_ended_yesterday_does_not() -> None:
    body = fx.treatment("1", "FINI HIER", "20260101", "20261202") + fx.treatment(
        "2", "FINI AUJOURD'HUI", "20260101", "20261203"
    )
    doc = _doc(
        "medical-summary", f"<component><section><code code='10160-0'/>{body}</section></component>"
    )
    assert [e.label for e in extract(doc, TODAY)] == ["FINI AUJOURD'HUI"]


def test_a_dispensation_is_a_current_treatment_for_six_months() -> None:
    body = fx.dispensed("3400000000001", "RECENT 10 MG CPR", "20261001") + fx.dispensed(
        "3400000000002", "ANCIEN 5 MG CPR", "20260501"
    )
    doc = _doc(
        "reimbursement", f"<component><section><code code='10160-0'/>{body}</section></component>"
    )
    assert [(e.label, e.on, e.code) for e in extract(doc, TODAY)] == [
        ("RECENT 10 MG CPR", "2026-10-01", None)
    ]  # 3 December: 63 days after the first, 216 after the second


def test_what_is_not_a_structured_cda_gives_nothing() -> None:
    assert extract(b"%PDF-1.4 not a CDA", TODAY) == []
    assert extract(cda_document("lab-report"), TODAY) == []  # narrative only


# -- through the gate ---------------------------------------------------------------------


def _deposit(world: Runtime, name: str, sections: str, type_code: str, at: datetime, **kw: bool):  # type: ignore[no-untyped-def]
    meta = dataclasses.replace(
        new_document(at, type_code=type_code, title=name, **kw), mime_type="text/xml"
    )
    return world.access(pro(world, GP)).deposit_document(INS, meta, _doc(name, sections))


@pytest.fixture
def record(world: Runtime) -> dict[str, str]:
    open_record(world, INS)
    docs = {
        "vsm": _deposit(
            world, "medical-summary", fx.VSM, "SYNTH", datetime(2020, 3, 12, tzinfo=UTC)
        ),
        "vac": _deposit(world, "vaccinations", fx.VAC, "11369-6", datetime(2021, 4, 9, tzinfo=UTC)),
        "bio": _deposit(world, "lab-report", fx.BIO, "11502-2", datetime(2024, 1, 10, tzinfo=UTC)),
        "ips": _deposit(
            world, "patient-summary", fx.IPS, "60591-5", datetime(2024, 1, 15, tzinfo=UTC)
        ),
    }
    return {k: v.logical_id for k, v in docs.items()}


def _lines(s: CareSummary) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return [
        (line.entry.kind, line.entry.label, line.entry.detail, line.sources) for line in s.lines
    ]


def test_the_holder_reads_one_line_per_fact_with_every_source(
    world: Runtime, record: dict[str, str]
) -> None:
    s = world.access(actors.patient_actor(world, INS)).care_summary(INS)
    d = record
    assert _lines(s) == [
        ("allergy", "Amoxicilline", "allergie médicamenteuse", (d["ips"], d["vsm"])),
        ("treatment", fx.METFORMIN[1], "1 comprimé(s) par jour, voie orale", (d["ips"], d["vsm"])),
        (
            "vaccination",
            fx.DTCP[1],
            "Diphtérie-tétanos-coqueluche-poliomyélite, lot L-2021",
            (d["vac"],),
        ),
        ("vaccination", fx.BCG[1], "Vaccin BCG vivant atténué, lot L-1990", (d["vac"],)),
        ("problem", fx.DIABETES[1], "", (d["ips"], d["vsm"])),
        # The latest result of each test: the patient summary's newer HbA1c.
        ("result", fx.HBA1C[1], "6.8 %", (d["ips"], d["bio"])),
        ("result", "Glucose [Masse/Volume] Sérum/Plasma ; Numérique", "1.32 g/L", (d["bio"],)),
    ]
    assert (s.read, s.more, s.unreadable) == (4, 0, [])
    assert set(s.documents) == set(d.values())
    # Traced like any reading, naming the documents it read.
    trace = world.access(actors.patient_actor(world, INS)).history(INS).items[0]
    assert trace.action == "summary.read" and set(trace.documents) == set(d.values())


def test_a_masked_document_never_feeds_a_professional_summary(
    world: Runtime, record: dict[str, str]
) -> None:
    holder = world.access(actors.patient_actor(world, INS))
    holder.update_document(INS, record["ips"], masked_ps=True)
    nurse = world.access(pro(world, NURSE))
    nurse.declare_consent(INS)
    seen = nurse.care_summary(INS)
    assert all(record["ips"] not in line.sources for line in seen.lines)
    assert record["ips"] not in seen.documents
    # Without the patient summary, the nurse's latest HbA1c is the lab report's (a nurse reads
    # lab reports: BIOLOGY in the matrix).
    hba1c = [line.entry.detail for line in seen.lines if line.entry.label == fx.HBA1C[1]]
    assert hba1c == ["7.1 %"]
    # The GP, its author, still reads it.
    gp = world.access(pro(world, GP))
    gp.declare_consent(INS)
    assert record["ips"] in gp.care_summary(INS).documents


def test_the_habilitation_matrix_decides_which_documents_feed_it(
    world: Runtime, record: dict[str, str], clock: FixedClock
) -> None:
    # A discharge letter (LIAISON in the matrix) names another allergy: a nurse may read such
    # letters, a community pharmacist may not (matrix.json: profession 21 without section).
    letter = _deposit(
        world,
        "discharge-letter",
        "<component><section><code code='48765-2'/>"
        + fx.allergy("J01CE01", "Pénicilline G", "20230505")
        + "</section></component>",
        "11490-0",
        clock.now(),
    )
    for who, sees in ((NURSE, True), (PHARMACIST, False)):
        gate = world.access(pro(world, who))
        gate.declare_consent(INS)
        summary = gate.care_summary(INS)
        allergies = [line.entry.label for line in summary.of("allergy")]
        assert ("Pénicilline G" in allergies) is sees, who
        assert (letter.logical_id in summary.documents) is sees
        assert "Amoxicilline" in allergies


def test_a_document_hidden_from_the_holder_never_feeds_their_summary(
    world: Runtime, clock: FixedClock
) -> None:
    open_record(world, INS)
    hidden = _deposit(world, "lab-report", fx.BIO, "11502-2", clock.now(), invisible_patient=True)
    s = world.access(actors.patient_actor(world, INS)).care_summary(INS)
    assert s.lines == [] and hidden.logical_id not in s.documents and s.read == 0


@pytest.fixture
def client(world: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(world)) as c:
        yield c


def test_the_portal_the_pdf_and_the_fhir_summary_show_it(
    client: TestClient, world: Runtime, clock: FixedClock, record: dict[str, str]
) -> None:
    code = world.access(pro(world, GP)).issue_activation_code(INS).code
    activate(client, clock, INS.value, code)
    page = get(client, "/portail/dossier/synthese").text
    assert "Amoxicilline" in page and "6.8 %" in page and "7.1 %" not in page
    assert f'href="/portail/dossier/documents/{record["ips"]}"' in page
    assert "Vaccinations" in page and "11 août" not in page
    # What the holder types in their profile joins the summary, marked as theirs.
    form = get(client, "/portail/dossier/profil")
    post_form(
        client, "/portail/dossier/profil", form, partie="allergies", texte="Pollen\n\n Acariens "
    )
    post_form(client, "/portail/dossier/profil", form, partie="contacts", texte="Dominique 0600")
    page = html.unescape(get(client, "/portail/dossier/synthese").text)
    assert "<strong>Pollen</strong> — déclaré par le patient" in page
    assert "<strong>Acariens</strong> — déclaré par le patient" in page
    assert "Dominique" not in page  # an emergency contact is no line of the summary
    # A physician reads it (the patient's documents, DOCPAT08); a nurse's profession may not.
    gp = world.access(pro(world, GP))
    gp.declare_consent(INS)
    assert "Pollen" in [line.entry.label for line in gp.care_summary(INS).of("allergy")]
    nurse = world.access(pro(world, NURSE))
    nurse.declare_consent(INS)
    assert "Pollen" not in [line.entry.label for line in nurse.care_summary(INS).of("allergy")]
    pdf = client.get("/portail/dossier/synthese.pdf")
    text = "".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf.content)).pages)
    assert "Synthèse de soins" in text and "Amoxicilline" in text and "Source :" in text

    holder = actors.patient_actor(world, INS)
    key = world.access(holder).read_record(INS).key
    bundle = client.get(f"/fhir/Patient/{key}/$summary", headers=bearer(world, holder))
    assert bundle.status_code == 200, bundle.text
    body = bundle.json()
    Bundle.model_validate(body)
    composition = body["entry"][0]["resource"]
    assert composition["resourceType"] == "Composition"
    sections = {s["code"]["coding"][0]["code"]: s for s in composition["section"]}
    assert set(sections) == {"48765-2", "10160-0", "11450-4", "11369-6", "30954-2"}
    kinds = [e["resource"]["resourceType"] for e in body["entry"][1:]]
    assert kinds.count("Immunization") == 2 and kinds.count("Observation") == 2
    allergy = next(
        e["resource"]
        for e in body["entry"]
        if e["resource"]["resourceType"] == "AllergyIntolerance"
        and e["resource"]["code"]["text"] == "Amoxicilline"
    )
    assert allergy["code"]["coding"][0] == {
        "system": "http://www.whocc.no/atc",
        "code": "J01CA04",
        "display": "Amoxicilline",
    }
    assert allergy["meta"]["source"].endswith(f".{record['ips']}")
    # Every reference in the document resolves inside it.
    urls = {e["fullUrl"] for e in body["entry"]}
    refs = {r["reference"] for s in composition["section"] for r in s.get("entry", [])}
    assert refs <= urls and composition["subject"]["reference"] in urls
