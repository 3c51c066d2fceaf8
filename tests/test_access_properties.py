"""Property-based tests over random worlds: professionals of every kind, documents with random
codes and flags, consents, care teams, blocks, oppositions, modes and times. In every world, what
the real gate and database return must be exactly what the independent reference model
(``tests/access_model.py``, written from docs/access-rules.md) says each actor must see."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from datetime import timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmp.auth import actors
from dmp.clock import FixedClock
from dmp.domain.codes import PurposeOfUse
from dmp.domain.ins import Ins
from dmp.errors import DmpError, NotFound
from dmp.identity.actor import Actor, ActorKind, system_actor
from dmp.jobs import maintenance
from dmp.runtime import Runtime
from tests import access_model
from tests.factories import (
    CARDIO_COLLEAGUE,
    CARDIOLOGIST,
    GP,
    NURSE,
    PHARMACIST,
    T0,
    ins_for,
    new_document,
    open_record,
    pro,
)

PROFESSIONALS = (GP, CARDIOLOGIST, CARDIO_COLLEAGUE, NURSE, PHARMACIST)
AUTHORS = (GP, CARDIOLOGIST, NURSE, PHARMACIST)
TYPES = ("11502-2", "18748-4", "57833-6", "60593-1", "34112-3", "11488-4", "60591-5", "11369-6")
MODES = (PurposeOfUse.NORMAL, PurposeOfUse.EMERGENCY, PurposeOfUse.REGULATION)
_patients = itertools.count(200)


@dataclass(frozen=True)
class Doc:
    author: str
    type_code: str
    masked: bool
    invisible_patient: bool
    invisible_reps: bool
    days_ago: int


@dataclass(frozen=True)
class World:
    docs: tuple[Doc, ...]
    consented: frozenset[str]
    care_team: frozenset[str]
    blocked: frozenset[str]
    medecin_traitant: str | None
    mask_all: bool
    oppose_bdg: bool
    oppose_c15: bool


docs = st.builds(
    Doc,
    author=st.sampled_from(AUTHORS),
    type_code=st.sampled_from(TYPES),
    masked=st.booleans(),
    invisible_patient=st.booleans(),
    invisible_reps=st.booleans(),
    days_ago=st.sampled_from((0, 10, 29, 31, 45)),
)
worlds = st.builds(
    World,
    docs=st.lists(docs, max_size=5).map(tuple),
    consented=st.frozensets(st.sampled_from(PROFESSIONALS), max_size=3),
    care_team=st.frozensets(st.sampled_from(PROFESSIONALS), max_size=2),
    blocked=st.frozensets(st.sampled_from(PROFESSIONALS), max_size=2),
    medecin_traitant=st.one_of(st.none(), st.sampled_from((GP, NURSE))),
    mask_all=st.booleans(),
    oppose_bdg=st.booleans(),
    oppose_c15=st.booleans(),
)


def _build(rt: Runtime, w: World) -> tuple[Ins, dict[str, Doc]]:
    clock = rt.clock
    assert isinstance(clock, FixedClock)
    ins = ins_for(next(_patients))
    open_record(rt, ins)
    ids: dict[str, Doc] = {}
    for d in w.docs:
        clock.set(T0 - timedelta(days=d.days_ago))
        meta = replace(
            new_document(
                clock.now(),
                type_code=d.type_code,
                masked_ps=d.masked,
                invisible_patient=d.invisible_patient,
            ),
            invisible_representatives=d.invisible_reps,
        )
        ids[rt.access(pro(rt, d.author)).deposit_document(ins, meta, b"x").logical_id] = d
    clock.set(T0)
    holder = rt.access(actors.patient_actor(rt, ins))
    for ps in w.consented:
        rt.access(pro(rt, ps)).declare_consent(ins)
    for ps in w.care_team:
        holder.declare_care_team(ins, ps)
    if w.medecin_traitant:
        # Named before any block: a blocked professional is not named GP (AC-3), but a GP
        # the holder blocks afterwards stays named and is refused.
        holder.update_settings(ins, medecin_traitant=w.medecin_traitant)
    for ps in w.blocked:
        holder.block_professional(ins, ps)
    holder.update_settings(
        ins, mask_all=w.mask_all, oppose_bris_de_glace=w.oppose_bdg, oppose_centre_15=w.oppose_c15
    )
    rt.access(system_actor("test")).add_representative(ins, "rep-1", "PARENT", "pere")
    return ins, ids


def _last_event(rt: Runtime, ins: Ins) -> sa.Row[tuple[str, str | None, str | None, str, str]]:
    with rt.engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT e.action, e.target, e.targets, e.outcome, e.reason FROM audit_events e "
                "JOIN patients p ON p.id = e.chain_id WHERE p.ins_value = :v "
                "ORDER BY e.seq DESC LIMIT 1"
            ),
            {"v": ins.value},
        ).one()


def _actors(rt: Runtime, ins: Ins) -> list[tuple[str, Actor, PurposeOfUse]]:
    out: list[tuple[str, Actor, PurposeOfUse]] = [
        (ps, pro(rt, ps), mode) for ps in PROFESSIONALS for mode in MODES
    ]
    out.append(("holder", actors.patient_actor(rt, ins), PurposeOfUse.NORMAL))
    out.append(("rep", Actor(ActorKind.REPRESENTATIVE, "rep-1", ins=ins), PurposeOfUse.NORMAL))
    return out


@pytest.mark.slow
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(w=worlds)
def test_the_gate_gives_exactly_what_the_reference_model_says(world: Runtime, w: World) -> None:
    rt = world
    ins, ids = _build(rt, w)
    model = _model_world(rt, w, ids)
    for who, actor, mode in _actors(rt, ins):
        access = rt.access(actor, mode, justification="patient inconscient", patient=ins)
        if who == "holder":
            expected: set[str] | None = access_model.holder_sees(model, representative=False)
        elif who == "rep":
            expected = access_model.holder_sees(model, representative=True)
        else:
            expected = access_model.professional_sees(model, _model_pro(rt, who), mode.value)
        try:
            page = access.search_documents(ins, statuses=None, limit=100)
        except DmpError as refused:
            assert expected is access_model.REFUSED, (who, mode, refused.reason)
            # A refused request wrote its refusal, with the same reason.
            last = _last_event(rt, ins)
            assert (last.outcome, last.reason) == ("denied", refused.reason)
            continue
        seen = {d.logical_id for d in page.items}
        assert seen == expected, (who, mode.value)
        assert page.total == len(seen)
        last = _last_event(rt, ins)
        assert last.action == "document.search"
        assert set((last.targets or "").split()) == seen
        reason = last.reason
        for doc_id in ids:
            # Single read and search agree; a hidden document is a 404 like a missing one.
            try:
                read = access.read_document(ins, doc_id)
            except NotFound:
                assert doc_id not in seen
            else:
                assert doc_id in seen
                assert read.logical_id == doc_id
                last = _last_event(rt, ins)
                assert (last.action, last.target, last.outcome, last.reason) == (
                    "document.read",
                    doc_id,
                    "success",
                    reason,
                )
    assert maintenance.verify_audit(rt).ok


def _model_pro(rt: Runtime, ps: str) -> access_model.ModelProfessional:
    actor = pro(rt, ps)
    assert actor.profession is not None and actor.structure_id is not None
    return access_model.ModelProfessional(ps, actor.structure_id, actor.profession)


def _model_world(rt: Runtime, w: World, ids: dict[str, Doc]) -> access_model.ModelWorld:
    structure = {ps: pro(rt, ps).structure_id or "" for ps in PROFESSIONALS}
    docs = {
        doc_id: access_model.ModelDoc(
            author=d.author,
            author_structure=structure[d.author],
            type_code=d.type_code,
            masked=d.masked,
            hidden_from_patient=d.invisible_patient and d.days_ago < 30,
            hidden_from_representatives=d.invisible_reps,
        )
        for doc_id, d in ids.items()
    }
    return access_model.ModelWorld(
        docs=docs,
        consented=w.consented,
        care_team=w.care_team,
        blocked=w.blocked,
        gp=w.medecin_traitant,
        mask_all=w.mask_all,
        opposes_emergency=w.oppose_bdg,
        opposes_regulation=w.oppose_c15,
    )
