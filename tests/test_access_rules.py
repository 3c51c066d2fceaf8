"""The access rules through the gate, on a real database (both engines).

Each test names the rule (AC-n, docs/access-rules.md) it proves.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
import sqlalchemy as sa

from dmp.access.views import TraceView
from dmp.auth import actors
from dmp.clock import FixedClock
from dmp.domain.codes import PurposeOfUse
from dmp.domain.ins import Ins
from dmp.errors import Conflict, Forbidden, InvalidInput, NotFound
from dmp.identity.actor import Actor, ActorKind, system_actor
from dmp.runtime import Runtime
from tests.factories import (
    CARDIO_COLLEAGUE,
    CARDIOLOGIST,
    GP,
    NURSE,
    OCCUPATIONAL_DOCTOR,
    PHARMACIST,
    T0,
    ins_for,
    new_document,
    open_record,
    pro,
)

BDG = PurposeOfUse.EMERGENCY


@pytest.fixture
def ins(world: Runtime) -> Ins:
    ins = ins_for(11)
    open_record(world, ins)
    return ins


def _deposit(rt: Runtime, actor_id: str, ins: Ins, **kw: object) -> str:
    """A biology report by default: every profession of the test directory may read it."""
    kw.setdefault("type_code", "11502-2")
    doc = rt.access(pro(rt, actor_id)).deposit_document(ins, new_document(T0, **kw), b"contenu")  # type: ignore[arg-type]
    return doc.logical_id


def _visible(
    rt: Runtime,
    actor: Actor,
    ins: Ins,
    purpose: PurposeOfUse = PurposeOfUse.NORMAL,
    justification: str | None = None,
) -> set[str]:
    page = rt.access(actor, purpose, justification=justification, patient=ins).search_documents(
        ins, statuses=None, limit=100
    )
    assert page.total == len(page.items)
    return {d.logical_id for d in page.items}


def _clock(rt: Runtime) -> FixedClock:
    assert isinstance(rt.clock, FixedClock)
    return rt.clock


def _holder(rt: Runtime, ins: Ins) -> Actor:
    return actors.patient_actor(rt, ins)


def test_ac1_closed_record(world: Runtime, ins: Ins) -> None:
    world.access(pro(world, GP)).declare_consent(ins)
    world.access(_holder(world, ins)).close_record(ins, "choix")
    with pytest.raises(Forbidden, match="closed since 2026-03-02") as err:
        world.access(pro(world, GP)).search_documents(ins)
    assert err.value.reason == "DENY_RECORD_CLOSED"
    assert world.access(_holder(world, ins)).search_documents(ins).total == 0


def test_ac3_block_overrides_consent_in_every_mode(world: Runtime, ins: Ins) -> None:
    holder = world.access(_holder(world, ins))
    world.access(pro(world, NURSE)).declare_consent(ins)
    holder.block_professional(ins, NURSE)
    nurse = pro(world, NURSE)
    for purpose, why in ((PurposeOfUse.NORMAL, None), (BDG, "inconscient")):
        with pytest.raises(Forbidden) as err:
            world.access(nurse, purpose, justification=why, patient=ins).search_documents(ins)
        assert err.value.reason == "DENY_BLOCKED"
    with pytest.raises(Forbidden):
        world.access(nurse).deposit_document(ins, new_document(T0), b"x")
    holder.unblock_professional(ins, NURSE)
    assert world.access(nurse).search_documents(ins).total == 0


def test_ac4_care_team_and_consent(world: Runtime, ins: Ins) -> None:
    doc = _deposit(world, CARDIOLOGIST, ins)
    # Authorship is not consent (AC-10 is write-only): neither the author nor a colleague of
    # the author's structure reads the record for having deposited in it.
    for who in (CARDIOLOGIST, CARDIO_COLLEAGUE):
        with pytest.raises(Forbidden, match="consent") as err:
            _visible(world, pro(world, who), ins)
        assert err.value.reason == "DENY_NO_CONSENT"
    with pytest.raises(Forbidden, match="consent"):
        _visible(world, pro(world, NURSE), ins)
    # The holder declares the nurse part of the team (initial consent given at opening).
    world.access(_holder(world, ins)).declare_care_team(ins, NURSE)
    assert _visible(world, pro(world, NURSE), ins) == {doc}
    # A professional who may read adds a colleague (L1111-17 II); one who may not cannot.
    with pytest.raises(Forbidden):
        world.access(pro(world, PHARMACIST)).declare_care_team(ins, GP)
    with pytest.raises(Forbidden):
        world.access(pro(world, CARDIOLOGIST)).declare_care_team(ins, PHARMACIST)
    world.access(pro(world, CARDIOLOGIST)).declare_consent(ins)
    world.access(pro(world, CARDIOLOGIST)).declare_care_team(ins, PHARMACIST)
    assert _visible(world, pro(world, PHARMACIST), ins) == {doc}


def test_ac4_care_team_is_declared_in_normal_mode_only(world: Runtime, ins: Ins) -> None:
    """Defect: an emergency reader declared a care team and kept normal access after the
    window closed."""
    _deposit(world, CARDIOLOGIST, ins)
    nurse = pro(world, NURSE)
    emergency = world.access(nurse, BDG, justification="patient inconscient", patient=ins)
    assert emergency.search_documents(ins).total == 1
    for mode, kw in ((BDG, {"justification": "x", "patient": ins}), (PurposeOfUse.REGULATION, {})):
        with pytest.raises(Forbidden) as err:
            world.access(pro(world, GP), mode, **kw).declare_care_team(ins, NURSE)  # type: ignore[arg-type]
        assert err.value.reason == "DENY_NORMAL_MODE_ONLY"
    with pytest.raises(Forbidden) as err:
        emergency.declare_care_team(ins, NURSE)
    assert err.value.reason == "DENY_NORMAL_MODE_ONLY"
    _clock(world).advance(timedelta(days=6))  # the window closed
    with pytest.raises(Forbidden, match="consent"):
        _visible(world, nurse, ins)


def test_ac4_care_team_needs_the_initial_consent(world: Runtime, ins: Ins) -> None:
    _deposit(world, CARDIOLOGIST, ins)
    world.access(_holder(world, ins)).declare_care_team(ins, CARDIO_COLLEAGUE)
    assert len(_visible(world, pro(world, CARDIO_COLLEAGUE), ins)) == 1
    with world.engine.begin() as conn:
        conn.execute(sa.text("UPDATE records SET initial_consent_at = NULL"))
    with pytest.raises(Forbidden, match="consent"):
        _visible(world, pro(world, CARDIO_COLLEAGUE), ins)


def test_ac5_matrix_applies_in_sql_before_paging(world: Runtime, ins: Ins) -> None:
    for t in ("11502-2", "18748-4", "57833-6", "34112-3", "60593-1"):
        _deposit(world, CARDIOLOGIST, ins, type_code=t)
    world.access(pro(world, PHARMACIST)).declare_consent(ins)
    pharma = world.access(pro(world, PHARMACIST))
    page = pharma.search_documents(ins, limit=1)
    assert page.total == 3  # biology, prescription, dispensation; not imaging nor hospital report
    assert len(page.items) == 1
    past_the_end = pharma.search_documents(ins, limit=1, offset=5)
    assert (past_the_end.total, past_the_end.items) == (3, [])
    assert {d.type_code for d in pharma.search_documents(ins).items} == {
        "11502-2",
        "57833-6",
        "60593-1",
    }
    world.access(pro(world, NURSE)).declare_consent(ins)
    assert len(_visible(world, pro(world, NURSE), ins)) == 2  # biology and prescription


def test_ac6_masked_documents(world: Runtime, ins: Ins) -> None:
    masked = _deposit(world, CARDIOLOGIST, ins, masked_ps=True)
    plain = _deposit(world, CARDIOLOGIST, ins)
    for who in (NURSE, CARDIOLOGIST, CARDIO_COLLEAGUE):
        world.access(pro(world, who)).declare_consent(ins)
    assert _visible(world, pro(world, NURSE), ins) == {plain}
    assert _visible(world, pro(world, CARDIOLOGIST), ins) == {masked, plain}  # author
    assert _visible(world, pro(world, CARDIO_COLLEAGUE), ins) == {masked, plain}  # structure
    with pytest.raises(NotFound):
        world.access(pro(world, NURSE)).read_document(ins, masked)
    # Emergency does not lift masking.
    emergency = _visible(world, pro(world, NURSE), ins, BDG, "patient inconscient")
    assert emergency == {plain}
    # The holder masks everything at once: only authors still see their documents.
    world.access(_holder(world, ins)).update_settings(ins, mask_all=True)
    assert _visible(world, pro(world, NURSE), ins) == set()
    assert _visible(world, pro(world, CARDIOLOGIST), ins) == {masked, plain}
    # The holder unmasks; then masks one document (a new metadata version).
    holder = world.access(_holder(world, ins))
    holder.update_settings(ins, mask_all=False)
    v2 = holder.update_document(ins, plain, masked_ps=True)
    assert v2.version == 2
    assert v2.logical_id == plain
    assert _visible(world, pro(world, NURSE), ins) == set()
    assert [v.version for v in holder.document_versions(ins, plain)] == [1, 2]


def test_ac7_medecin_traitant_reads_masked(world: Runtime, ins: Ins) -> None:
    masked = _deposit(world, CARDIOLOGIST, ins, masked_ps=True)
    with pytest.raises(Forbidden):
        _visible(world, pro(world, GP), ins)
    world.access(_holder(world, ins)).update_settings(ins, medecin_traitant=GP, mask_all=True)
    assert _visible(world, pro(world, GP), ins) == {masked}
    assert world.access(pro(world, GP)).read_document(ins, masked).masked_ps
    # Defect: in emergency or regulation-centre mode the GP lost the masked documents; AC-6/7
    # exempt the GP in every mode, and the GP opens no emergency window to read.
    assert _visible(world, pro(world, GP), ins, BDG, "patient inconscient") == {masked}
    assert _visible(world, pro(world, GP), ins, PurposeOfUse.REGULATION) == {masked}
    history = world.access(_holder(world, ins)).history(ins, limit=100).items
    assert not [t for t in history if t.action == "emergency.open"]


def test_ac8_emergency_access(world: Runtime, ins: Ins) -> None:
    world.access(_holder(world, ins)).update_settings(ins, medecin_traitant=GP)
    doc = _deposit(world, CARDIOLOGIST, ins)
    nurse = pro(world, NURSE)
    with pytest.raises(Forbidden, match="justification"):
        world.access(nurse, BDG, patient=ins).search_documents(ins)
    world.access(
        nurse, BDG, justification="malaise, patiente inconsciente", patient=ins
    ).read_document(ins, doc)
    # The window stays open five days without a new justification.
    _clock(world).advance(timedelta(days=4, hours=23))
    assert world.access(nurse, BDG, patient=ins).read_document(ins, doc).logical_id == doc
    _clock(world).advance(timedelta(hours=2))
    with pytest.raises(Forbidden, match="justification"):
        world.access(nurse, BDG, patient=ins).read_document(ins, doc)
    # Notices to the holder and the GP were queued with the opening, in the same transaction.
    notes = world.access(system_actor("test")).notifications(ins)
    emergency = [n for n in notes if str(n["kind"]).startswith("emergency")]
    assert sorted((n["kind"], n["recipient_kind"]) for n in emergency) == [
        ("emergency_access", "medecin_traitant"),
        ("emergency_access", "patient"),
        ("emergency_expired", "patient"),  # told again when the window closes (issue 11)
    ]
    expired = next(n for n in emergency if n["kind"] == "emergency_expired")
    assert expired["due_at"] - expired["created_at"] == timedelta(
        days=world.settings.emergency_access_days
    )
    history = world.access(_holder(world, ins)).history(ins).items
    assert any(t.action == "emergency.open" and t.actor_id == NURSE for t in history)
    assert any(t.reason == "ALLOW_BRIS_DE_GLACE" and t.purpose == "bris_de_glace" for t in history)
    # The justification is stored encrypted.
    with world.engine.connect() as conn:
        sealed = conn.execute(
            sa.text("SELECT justification_sealed FROM emergency_accesses")
        ).scalar_one()
    assert b"inconsciente" not in bytes(sealed)


def test_ac8_opposition(world: Runtime, ins: Ins) -> None:
    world.access(_holder(world, ins)).update_settings(ins, oppose_bris_de_glace=True)
    with pytest.raises(Forbidden) as err:
        world.access(pro(world, NURSE), BDG, justification="urgence", patient=ins).search_documents(
            ins
        )
    assert err.value.reason == "DENY_OPPOSED_EMERGENCY"


def test_ac9_regulation_centre(world: Runtime, ins: Ins) -> None:
    _deposit(world, CARDIOLOGIST, ins)
    regulator = pro(world, GP)
    assert len(_visible(world, regulator, ins, PurposeOfUse.REGULATION)) == 1
    with pytest.raises(Forbidden) as err:
        _visible(world, pro(world, NURSE), ins, PurposeOfUse.REGULATION)
    assert err.value.reason == "DENY_NOT_REGULATOR"
    world.access(_holder(world, ins)).update_settings(ins, oppose_centre_15=True)
    with pytest.raises(Forbidden) as err:
        _visible(world, regulator, ins, PurposeOfUse.REGULATION)
    assert err.value.reason == "DENY_OPPOSED_CENTRE_15"


def test_ac10_ac13_ac14_writing(world: Runtime, ins: Ins) -> None:
    doc = _deposit(world, CARDIOLOGIST, ins)
    world.access(pro(world, NURSE)).declare_consent(ins)
    nurse = world.access(pro(world, NURSE))
    nurse_doc = nurse.deposit_document(ins, new_document(T0, type_code="57832-8"), b"soins")
    # A professional who sees the document but did not author it: 403.
    world.access(pro(world, GP)).declare_consent(ins)
    gp = world.access(pro(world, GP))
    for attempt in (
        lambda: gp.delete_document(ins, doc),
        lambda: gp.update_document(ins, doc, archived=True),
        lambda: gp.deposit_document(ins, new_document(T0), b"v2", replaces=doc),
    ):
        with pytest.raises(Forbidden) as err:
            attempt()
        assert err.value.reason == "DENY_NOT_AUTHOR"
    # One who cannot see it at all: 404, as if it did not exist.
    with pytest.raises(NotFound):
        world.access(pro(world, PHARMACIST)).delete_document(ins, doc)
    # The author's structure replaces; the old document is superseded.
    world.access(pro(world, CARDIOLOGIST)).declare_consent(ins)
    colleague = world.access(pro(world, CARDIO_COLLEAGUE))
    new = colleague.deposit_document(ins, new_document(T0), b"v2", replaces=doc)
    assert new.replaces_id == doc
    assert world.access(pro(world, CARDIOLOGIST)).read_document(ins, doc).status == "superseded"
    with pytest.raises(Conflict):
        colleague.deposit_document(ins, new_document(T0), b"v3", replaces=doc)
    # The author archives and deletes.
    assert nurse.update_document(ins, nurse_doc.logical_id, archived=True).status == "archived"
    nurse.delete_document(ins, nurse_doc.logical_id)
    with pytest.raises(NotFound):
        nurse.read_document(ins, nurse_doc.logical_id)
    with pytest.raises(NotFound):
        world.access(_holder(world, ins)).read_document(ins, nurse_doc.logical_id)


def test_ac11_invisible_to_patient(world: Runtime, ins: Ins) -> None:
    doc = _deposit(world, CARDIOLOGIST, ins, invisible_patient=True)
    holder = world.access(_holder(world, ins))
    assert _visible(world, _holder(world, ins), ins) == set()
    with pytest.raises(NotFound):
        holder.read_document(ins, doc)
    with pytest.raises(Forbidden):  # the holder cannot lift it
        holder.update_document(ins, doc, invisible_patient=False)
    notes = world.access(system_actor("test")).notifications(ins)
    # R1111-53: told after two weeks if still hidden, and at the reveal after a month.
    assert sorted(
        (n["kind"], n["due_at"] - T0) for n in notes if str(n["kind"]).startswith("document")
    ) == [
        ("document_pending_announcement", timedelta(days=14)),
        ("document_revealed", timedelta(days=30)),
    ]
    # After one month the document becomes visible by itself.
    _clock(world).advance(timedelta(days=30))
    assert _visible(world, _holder(world, ins), ins) == {doc}
    # The author lifts the flag early on another document.
    other = _deposit(world, CARDIOLOGIST, ins, invisible_patient=True)
    world.access(pro(world, CARDIOLOGIST)).update_document(ins, other, invisible_patient=False)
    assert other in _visible(world, _holder(world, ins), ins)


def test_ac11_ac12_representatives(world: Runtime, ins: Ins) -> None:
    world.access(system_actor("desk")).add_representative(
        ins, "rep-1", "PARENT EXEMPLE", "mere", minor=True
    )
    rep = Actor(ActorKind.REPRESENTATIVE, "rep-1", ins=ins)
    hidden_pending = _deposit(world, CARDIOLOGIST, ins, invisible_patient=True)
    confidential = world.access(pro(world, CARDIOLOGIST)).deposit_document(
        ins, dataclasses.replace(new_document(T0), invisible_representatives=True), b"ivg"
    )
    plain = _deposit(world, CARDIOLOGIST, ins)
    assert _visible(world, rep, ins) == {plain}
    assert _visible(world, _holder(world, ins), ins) == {plain, confidential.logical_id}
    assert hidden_pending not in _visible(world, _holder(world, ins), ins)
    with pytest.raises(Forbidden):
        world.access(rep).update_document(ins, plain, invisible_representatives=True)
    # Representatives act with the holder's rights otherwise: mask, read the history.
    world.access(rep).update_document(ins, plain, masked_ps=True)
    assert world.access(rep).history(ins).total > 0
    # An unregistered representative gets nothing.
    with pytest.raises(NotFound):
        world.access(Actor(ActorKind.REPRESENTATIVE, "rep-2", ins=ins)).search_documents(ins)


def test_ac16_forbidden_actors(world: Runtime, ins: Ins) -> None:
    """Recognised from the directory (the structure's activity sector), even with consent and
    in emergency; and a client can no longer opt in or out by asserting a role."""
    occupational = pro(world, OCCUPATIONAL_DOCTOR)
    with pytest.raises(Forbidden):  # not even a consent can be recorded for them
        world.access(occupational).declare_consent(ins)
    world.access(_holder(world, ins)).declare_consent(ins, OCCUPATIONAL_DOCTOR)
    for purpose in (PurposeOfUse.NORMAL, BDG, PurposeOfUse.REGULATION):
        with pytest.raises(Forbidden) as err:
            world.access(occupational, purpose, justification="x", patient=ins).search_documents(
                ins
            )
        assert err.value.reason == "DENY_FORBIDDEN_ACTOR"
    with pytest.raises(Forbidden) as err:
        world.access(occupational).deposit_document(ins, new_document(T0), b"x")
    assert err.value.reason == "DENY_FORBIDDEN_ACTOR"


def test_ac17_traces(world: Runtime, ins: Ins) -> None:
    world.access(pro(world, NURSE)).declare_consent(ins)
    world.access(pro(world, NURSE)).search_documents(ins)
    _deposit(world, CARDIOLOGIST, ins)
    world.access(_holder(world, ins)).update_settings(ins, medecin_traitant=GP)
    gp_view = world.access(pro(world, GP)).history(ins, limit=100)
    assert {t.actor_id for t in gp_view.items} >= {NURSE, CARDIOLOGIST, "desk-1"}
    nurse_view = world.access(pro(world, NURSE)).history(ins, limit=100)
    assert {t.actor_id for t in nurse_view.items} == {NURSE}


def test_ac15_no_hidden_search_window(world: Runtime, ins: Ins) -> None:
    """A search returns what its criteria ask: a document whose service ended three years ago
    is found without a date criterion; the two-year window is asked for explicitly."""
    old = (
        world.access(pro(world, CARDIOLOGIST))
        .deposit_document(ins, new_document(T0 - timedelta(days=3 * 365)), b"ancien")
        .logical_id
    )
    recent = _deposit(world, CARDIOLOGIST, ins)
    holder = world.access(_holder(world, ins))
    assert {d.logical_id for d in holder.search_documents(ins).items} == {old, recent}
    assert holder.search_documents(ins).total == 2
    two_years = holder.search_documents(ins, service_from=T0 - timedelta(days=730))
    assert {d.logical_id for d in two_years.items} == {recent}
    assert holder.search_documents(ins, service_from=T0 - timedelta(days=4 * 365)).total == 2


def test_holder_input_is_validated(world: Runtime, ins: Ins) -> None:
    holder = world.access(_holder(world, ins))
    with pytest.raises(InvalidInput):
        holder.update_settings(ins)
    with pytest.raises(InvalidInput):
        holder.block_professional(ins, "not an id!")
    with pytest.raises(Forbidden):
        world.access(pro(world, GP)).update_settings(ins, mask_all=True)


def test_hidden_documents_leave_no_id_in_the_history(world: Runtime, ins: Ins) -> None:
    """Defect: the access history (and AuditEvent) showed the ids of documents hidden from the
    patient or from the representatives. The accesses stay visible; the ids do not."""
    world.access(system_actor("desk")).add_representative(ins, "rep-1", "PARENT EXEMPLE", "mere")
    pending = _deposit(world, CARDIOLOGIST, ins, invisible_patient=True)
    confidential = (
        world.access(pro(world, CARDIOLOGIST))
        .deposit_document(
            ins, dataclasses.replace(new_document(T0), invisible_representatives=True), b"x"
        )
        .logical_id
    )
    plain = _deposit(world, CARDIOLOGIST, ins)
    world.access(pro(world, NURSE)).declare_consent(ins)
    world.access(pro(world, NURSE)).search_documents(ins)

    def ids_in(items: list[TraceView]) -> set[str]:
        return {x for t in items for x in (t.target, *t.documents) if x}

    holder_view = world.access(_holder(world, ins)).history(ins, limit=100).items
    assert pending not in ids_in(holder_view)
    assert {confidential, plain} <= ids_in(holder_view)
    assert any(t.action == "document.create" and t.target is None for t in holder_view)
    rep = Actor(ActorKind.REPRESENTATIVE, "rep-1", ins=ins)
    rep_view = world.access(rep).history(ins, limit=100).items
    assert not {pending, confidential} & ids_in(rep_view)
    assert plain in ids_in(rep_view)
    # The GP, who may see them all, sees every id.
    world.access(_holder(world, ins)).update_settings(ins, medecin_traitant=GP)
    gp_view = world.access(pro(world, GP)).history(ins, limit=100).items
    assert {pending, confidential, plain} <= ids_in(gp_view)
    # Once revealed (one month), the holder sees the id again.
    _clock(world).advance(timedelta(days=31))
    holder_view = world.access(_holder(world, ins)).history(ins, limit=100).items
    assert pending in ids_in(holder_view)


def test_a_hidden_document_read_is_an_audited_attempt(world: Runtime, ins: Ins) -> None:
    """A 404 for a hidden (or missing) document is the same answer, and it is in the trail."""
    masked = _deposit(world, CARDIOLOGIST, ins, masked_ps=True)
    world.access(pro(world, NURSE)).declare_consent(ins)
    for target in (masked, "0" * 24):
        with pytest.raises(NotFound) as err:
            world.access(pro(world, NURSE)).read_document(ins, target)
        assert str(err.value) == "no such document"
    world.access(_holder(world, ins)).update_settings(ins, medecin_traitant=GP)
    trail = world.access(pro(world, GP)).history(ins, limit=100).items
    attempts = [t for t in trail if t.reason == "DENY_NOT_FOUND"]
    assert [(t.actor_id, t.outcome, t.action) for t in attempts] == [
        (NURSE, "denied", "document.read")
    ] * 2
    assert {t.target for t in attempts} == {masked, "0" * 24}
