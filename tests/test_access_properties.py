"""Property-based tests over random worlds: professionals of every kind, documents with random
codes and flags, consents, blocks, oppositions, modes and times. The invariants of the access rules
must hold in every one of them, through the real gate and database."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from datetime import timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmp.access import admin
from dmp.access.runtime import Runtime
from dmp.clock import FixedClock
from dmp.domain.codes import PurposeOfUse
from dmp.domain.ins import Ins
from dmp.errors import DmpError, NotFound
from dmp.identity.actor import Actor, ActorKind, system_actor
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
MODES = (PurposeOfUse.NORMAL, PurposeOfUse.BRIS_DE_GLACE, PurposeOfUse.CENTRE_15)
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
    consented=st.frozensets(st.sampled_from(PROFESSIONALS)),
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
    holder = rt.access(admin.patient_actor(rt, ins))
    for ps in w.consented:
        rt.access(pro(rt, ps)).declare_consent(ins)
    for ps in w.blocked:
        holder.block_professional(ins, ps)
    holder.update_settings(
        ins, mask_all=w.mask_all, oppose_bris_de_glace=w.oppose_bdg, oppose_centre_15=w.oppose_c15
    )
    if w.medecin_traitant:
        holder.update_settings(ins, medecin_traitant=w.medecin_traitant)
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
    out.append(("holder", admin.patient_actor(rt, ins), PurposeOfUse.NORMAL))
    out.append(("rep", Actor(ActorKind.REPRESENTATIVE, "rep-1", ins=ins), PurposeOfUse.NORMAL))
    return out


@pytest.mark.slow
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(w=worlds)
def test_access_invariants(world: Runtime, w: World) -> None:
    rt = world
    ins, ids = _build(rt, w)
    structures = {ps: pro(rt, ps).structure_id for ps in PROFESSIONALS}
    for who, actor, mode in _actors(rt, ins):
        access = rt.access(actor, mode, justification="patient inconscient", patient=ins)
        try:
            page = access.search_documents(ins, statuses=None, all_dates=True, limit=100)
        except DmpError as refused:
            # A refused request wrote its refusal, with the same reason.
            last = _last_event(rt, ins)
            assert (last.outcome, last.reason) == ("denied", refused.reason)
            seen: set[str] = set()
            searched = False
        else:
            seen = {d.logical_id for d in page.items}
            assert page.total == len(seen)
            last = _last_event(rt, ins)
            assert last.action == "document.search"
            assert set((last.targets or "").split()) == seen
            reason = last.reason
            searched = True

        # A blocked professional never reads, whatever the mode.
        if who in w.blocked:
            assert not searched
        for doc_id, d in ids.items():
            author_side = who == d.author or structures.get(who) == structures[d.author]
            # A masked document reaches no professional but its author, the author's structure
            # and the GP (in normal mode).
            if (d.masked or w.mask_all) and who in PROFESSIONALS and not author_side:
                assert doc_id not in seen or (
                    who == w.medecin_traitant and mode is PurposeOfUse.NORMAL
                )
            if d.invisible_patient and d.days_ago < 30 and who in ("holder", "rep"):
                assert doc_id not in seen
            if d.invisible_reps and who == "rep":
                assert doc_id not in seen
            # Single read and search agree.
            try:
                read = access.read_document(ins, doc_id)
            except NotFound:
                assert doc_id not in seen
            except DmpError:
                assert not searched
            else:
                assert doc_id in seen
                assert read.logical_id == doc_id
                last = _last_event(rt, ins)
                assert (last.action, last.target, last.outcome) == (
                    "document.read",
                    doc_id,
                    "success",
                )
                assert last.reason == reason
    assert admin.verify_audit(rt).ok
