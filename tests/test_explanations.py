"""The access history explains itself: each reason code has its French sentence and legal source
(compared with the table of docs/access-history.md, written for people), and each trace carries
what allowed it at that moment (the consent then in force, the care team, the emergency window
and its justification) and the documents it read, never one hidden from the reader."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle

from dmp.access.policy import Reason
from dmp.access.views import TraceView
from dmp.app import create_app
from dmp.auth import actors
from dmp.clock import FixedClock
from dmp.domain.codes import PurposeOfUse
from dmp.domain.explanations import RULES, rule_for
from dmp.domain.french import datetime_fr
from dmp.front import fhir_mapping
from dmp.front.explain import explain
from dmp.runtime import Runtime
from tests.factories import CARDIOLOGIST, GP, NURSE, ins_for, new_document, open_record, pro
from tests.fhir_helpers import bearer
from tests.portal_helpers import activate, get

DOC = Path(__file__).resolve().parents[1] / "docs" / "access-history.md"


def _documented() -> dict[str, tuple[str, str, str]]:
    """The docs' table: reason code -> (rule, sentence, source)."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.fullmatch(r"\| `([A-Z_0-9]+)` \| (.+?) \| (.+?) \| (.+?) \|", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3), m.group(4))
    return rows


@pytest.mark.parametrize("reason", list(Reason), ids=str)
def test_every_reason_code_has_its_sentence_and_source(reason: Reason) -> None:
    documented = _documented()
    assert reason.value in documented, f"{reason} is not in docs/access-history.md"
    rule = RULES[reason.value]
    assert (rule.rule, rule.sentence, rule.source) == documented[reason.value]
    # A sentence for people: French, no code, a full stop; a source that names a text.
    assert rule.sentence.endswith(".") and not re.search(r"[A-Z]{2,}_[A-Z_]+", rule.sentence)
    assert re.search(r"\b[LR]\d{4}|arrêté|TD3\.3c|L1470", rule.source), rule.source
    assert reason.value.startswith("DENY_") == rule.sentence.startswith("Refusé")


def test_the_docs_name_no_code_the_gate_does_not_write() -> None:
    assert set(_documented()) == {r.value for r in Reason}
    assert rule_for("SOMETHING_OLDER").sentence  # an unknown code still reads as a sentence


def _holder_history(rt: Runtime, ins_n: int) -> list[TraceView]:
    ins = ins_for(ins_n)
    return rt.access(actors.patient_actor(rt, ins)).history(ins, limit=100).items


def test_a_read_names_the_consent_in_force_then_and_the_document(
    world: Runtime, clock: FixedClock
) -> None:
    ins = ins_for(401)
    open_record(world, ins)
    doc = world.access(pro(world, GP)).deposit_document(
        ins, new_document(clock.now(), title="Bilan sanguin", type_code="11502-2"), b"b"
    )
    nurse = world.access(pro(world, NURSE))
    first_consent = clock.now()
    nurse.declare_consent(ins)
    clock.advance(timedelta(hours=2))
    nurse.read_content(ins, doc.logical_id)
    clock.advance(timedelta(days=3))
    second_consent = clock.now()
    world.access(actors.patient_actor(world, ins)).declare_consent(ins, NURSE)
    clock.advance(timedelta(hours=1))
    nurse.search_documents(ins)

    reads = [t for t in _holder_history(world, 401) if t.actor_id == NURSE]
    search, read = (
        next(t for t in reads if t.action == "document.search"),
        next(t for t in reads if t.action == "document.read"),
    )
    assert read.reason == search.reason == "ALLOW_CONSENT"
    # Each access names the consent in force at its moment, and who recorded it.
    assert (read.basis.consent_at, read.basis.consent_by) == (first_consent, "professional")
    assert (search.basis.consent_at, search.basis.consent_by) == (second_consent, "patient")
    assert [(b.id, b.title, b.type_code) for b in read.briefs] == [
        (doc.logical_id, "Bilan sanguin", "11502-2")
    ]
    words = explain(read)
    assert words.sentence == RULES["ALLOW_CONSENT"].sentence
    assert f"Consentement enregistré le {datetime_fr(first_consent)}" in words.details[0]
    assert "« Bilan sanguin »" in words.documents[0]
    assert "par vous" in explain(search).details[0]


def test_an_emergency_read_shows_the_holder_its_window_and_justification(
    world: Runtime, clock: FixedClock
) -> None:
    ins = ins_for(402)
    open_record(world, ins)
    world.access(pro(world, GP)).deposit_document(ins, new_document(clock.now()), b"x")
    opened = clock.now()
    world.access(
        pro(world, CARDIOLOGIST),
        PurposeOfUse.EMERGENCY,
        justification="Patient inconscient aux urgences",
        patient=ins,
    ).search_documents(ins)
    traces = [t for t in _holder_history(world, 402) if t.actor_id == CARDIOLOGIST]
    assert {t.action for t in traces} == {"emergency.open", "document.search"}
    for t in traces:
        assert t.reason == "ALLOW_BRIS_DE_GLACE"
        assert t.basis.justification == "Patient inconscient aux urgences"
        assert t.basis.emergency_opened_at == opened
        assert t.basis.emergency_until == opened + timedelta(
            days=world.settings.emergency_access_days
        )
    lines = explain(traces[0]).details
    assert any("« Patient inconscient aux urgences »" in line for line in lines)
    # The professional's own traces say the same to them.
    own = (
        world.access(
            pro(world, CARDIOLOGIST), PurposeOfUse.EMERGENCY, justification="suite", patient=ins
        )
        .history(ins)
        .items
    )
    assert own and all(t.basis.justification for t in own if t.reason == "ALLOW_BRIS_DE_GLACE")


def test_a_care_team_read_names_the_declaration_and_the_initial_consent(
    world: Runtime, clock: FixedClock
) -> None:
    ins = ins_for(403)
    opened = clock.now()
    open_record(world, ins)
    clock.advance(timedelta(days=1))
    declared = clock.now()
    world.access(actors.patient_actor(world, ins)).declare_care_team(ins, NURSE)
    world.access(pro(world, NURSE)).search_documents(ins)
    (read,) = [t for t in _holder_history(world, 403) if t.actor_id == NURSE]
    assert read.reason == "ALLOW_CARE_TEAM"
    assert (read.basis.care_team_at, read.basis.consent_by) == (declared, "patient")
    assert read.basis.initial_consent_at == opened


def test_a_document_hidden_from_the_holder_is_never_named(
    world: Runtime, clock: FixedClock
) -> None:
    ins = ins_for(404)
    open_record(world, ins)
    gp = world.access(pro(world, GP))
    gp.declare_consent(ins)
    shown = gp.deposit_document(ins, new_document(clock.now(), title="Visible"), b"v")
    hidden = gp.deposit_document(
        ins, new_document(clock.now(), title="A annoncer", invisible_patient=True), b"h"
    )
    gp.read_content(ins, hidden.logical_id)
    gp.search_documents(ins)
    traces = _holder_history(world, 404)
    named = {b.id for t in traces for b in t.briefs}
    assert shown.logical_id in named and hidden.logical_id not in named
    assert all("A annoncer" not in explain(t).text() for t in traces)
    # The GP, who may see both, reads both named.
    gp_named = {b.id for t in gp.history(ins, limit=100).items for b in t.briefs}
    assert {shown.logical_id, hidden.logical_id} <= gp_named


def test_the_audit_event_carries_the_explanation(world: Runtime, clock: FixedClock) -> None:
    ins = ins_for(405)
    open_record(world, ins)
    world.access(pro(world, GP)).deposit_document(ins, new_document(clock.now()), b"x")
    world.access(
        pro(world, CARDIOLOGIST),
        PurposeOfUse.EMERGENCY,
        justification="Detresse respiratoire",
        patient=ins,
    ).search_documents(ins)
    holder = world.access(actors.patient_actor(world, ins))
    page = holder.history(ins)
    assert page.patient_key is not None
    events = [fhir_mapping.audit_event(t, page.patient_key, n) for n, t in enumerate(page.items)]
    for e in events:
        AuditEvent.model_validate(e)
    emergency = next(
        e for e in events if e["agent"][0]["who"]["identifier"]["value"] == CARDIOLOGIST
    )
    why = emergency["entity"][-1]
    assert why["what"]["identifier"] == {"system": "urn:dmp:reason", "value": "ALLOW_BRIS_DE_GLACE"}
    details = {d["type"]: d["valueString"] for d in why["detail"]}
    assert (
        details["rule"] == "AC-8" and details["legal-source"] == "art. L1111-17 I et R1111-48 CSP"
    )
    assert "Detresse respiratoire" in why["description"]
    assert emergency["agent"][0]["policy"] == ["urn:dmp:rule:AC-8"]
    codes = {c["code"] for c in emergency["purposeOfEvent"][0]["coding"]}
    assert codes == {"bris_de_glace", "ETREAT"}


@pytest.fixture
def client(world: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(world)) as c:
        yield c


def test_the_portal_shows_others_first_and_the_export_explains(
    client: TestClient, world: Runtime, clock: FixedClock
) -> None:
    ins = ins_for(406)
    open_record(world, ins)
    gp = world.access(pro(world, GP))
    gp.declare_consent(ins)
    doc = gp.deposit_document(ins, new_document(clock.now(), title="Compte rendu"), b"c")
    code = gp.issue_activation_code(ins).code
    activate(client, clock, ins.value, code)
    for _ in range(25):  # the holder's own reading would fill more than a page
        get(client, "/portail/dossier/documents")
    gp.read_content(ins, doc.logical_id)

    default = get(client, "/portail/dossier/historique").text
    assert "consultation d&#39;un document" in default
    assert RULES["ALLOW_CONSENT"].sentence.replace("'", "&#39;") in default
    assert "« Compte rendu »" in default and "L1111-17 II" in default
    rows = re.findall(r"<tr class=\"[^\"]*\">", default)
    assert 0 < len(rows) < 20  # the holder's 25 page views are not there
    assert "<td>vous</td>" not in default
    mine = get(client, "/portail/dossier/historique?qui=moi").text
    assert "<td>vous</td>" in mine and "Page 1 sur" in mine
    bad = client.get("/portail/dossier/historique?qui=personne")
    assert bad.status_code == 422 and "Le filtre « Qui » est inconnu" in bad.text

    export = client.get("/portail/dossier/export.json").json()
    Bundle.model_validate(export)
    audits = [
        e["resource"] for e in export["entry"] if e["resource"]["resourceType"] == "AuditEvent"
    ]
    # Every trace once, the whole history (more than one page of the gate's 100 at most).
    everything = world.access(actors.patient_actor(world, ins)).history(ins, limit=100)
    assert len(audits) >= everything.total - 1 >= 25
    assert len({a["id"] for a in audits}) == len(audits)
    read = next(
        a
        for a in audits
        if a["subtype"][0]["code"] == "document.read"
        and a["agent"][0]["who"]["identifier"]["value"] == GP
    )
    assert "Compte rendu" in read["entity"][-1]["description"]


def test_the_fhir_history_explains_too(
    client: TestClient, world: Runtime, clock: FixedClock
) -> None:
    ins = ins_for(407)
    open_record(world, ins)
    world.access(pro(world, NURSE)).declare_consent(ins)
    world.access(pro(world, NURSE)).search_documents(ins)
    q = {"patient.identifier": f"urn:oid:{ins.oid}|{ins.value}"}
    got = client.get(
        "/fhir/AuditEvent", params=q, headers=bearer(world, actors.patient_actor(world, ins))
    )
    assert got.status_code == 200, got.text
    Bundle.model_validate(got.json())
    reasons = {
        e["resource"]["entity"][-1]["what"]["identifier"]["value"]: e["resource"]["entity"][-1]
        for e in got.json()["entry"]
    }
    assert reasons["ALLOW_CONSENT"]["name"] == RULES["ALLOW_CONSENT"].sentence
