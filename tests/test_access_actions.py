"""Every action the gate offers, against the independent model (issue 21, item 2).

Over random worlds (record open or closed, a deletion request pending, the holder's account
activated or not, consents, care team, GP, blocks of professionals and of a desk agent), each
attempt by a random actor (holder, representative, another patient, professionals of several
professions, a forbidden one, desk agents with and without a structure, a system job), in a
random mode, is refused by the gate exactly when ``tests/access_model.may_act`` (written from
the "Order of the rules" of docs/access-rules.md, sharing no code with the policy) says so. A
refusal the policy gave is in the trail as denied with its reason.

An attempt the model allows that changes the record runs on a fresh copy of the world, so that
every attempt meets the world its model answer was computed for.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmp.access.record_access import RecordAccess
from dmp.auth import actors
from dmp.domain.codes import CreationChannel, PurposeOfUse
from dmp.domain.ins import Ins
from dmp.errors import Conflict, DmpError, Forbidden, InvalidInput, NotFound
from dmp.identity.actor import Actor, ActorKind, system_actor
from dmp.records import patients, portal
from dmp.runtime import Runtime
from tests import access_model
from tests.factories import (
    CARDIO_COLLEAGUE,
    CARDIOLOGIST,
    GP,
    NURSE,
    OCCUPATIONAL_DOCTOR,
    PHARMACIST,
    PHARMACY,
    demographics_for,
    ins_for,
    new_document,
    open_record,
    pro,
)

PROS = (GP, CARDIOLOGIST, CARDIO_COLLEAGUE, NURSE, PHARMACIST)
DESK = "desk1"
WHO = (
    "holder",
    "rep",
    "stranger",
    "unregistered-rep",
    GP,
    CARDIOLOGIST,
    NURSE,
    PHARMACIST,
    OCCUPATIONAL_DOCTOR,
    DESK,
    "desk-without-structure",
    "system",
)
ACTIONS = (
    "read",
    "history",
    "open",
    "close",
    "settings",
    "block",
    "unblock",
    "request_deletion",
    "withdraw_deletion",
    "name_gp",
    "consent",
    "care_team",
    "deposit",
    "letter",
    "recovery",
    "reopen",
    "register_representative",
    "shred_keys",
    "declare_death",
    "purge",
)
READ_ONLY = {"read", "history", "open"}
MODES = {
    "normal": PurposeOfUse.NORMAL,
    "bris_de_glace": PurposeOfUse.EMERGENCY,
    "centre_15": PurposeOfUse.REGULATION,
}
_numbers = itertools.count(3000)


@dataclass(frozen=True)
class World:
    consented: frozenset[str]
    care_team: frozenset[str]
    blocked: frozenset[str]
    gp: str | None
    closed: bool
    deletion_pending: bool
    activated: bool


worlds = st.builds(
    World,
    consented=st.frozensets(st.sampled_from(PROS), max_size=3),
    care_team=st.frozensets(st.sampled_from(PROS), max_size=2),
    blocked=st.frozensets(st.sampled_from((*PROS, DESK)), max_size=2),
    gp=st.one_of(st.none(), st.sampled_from((GP, NURSE))),
    closed=st.just(False),
    deletion_pending=st.just(False),
    activated=st.just(False),
)
# The mode each professional acts in, and the professional each action names.
modes = st.fixed_dictionaries({who: st.sampled_from(tuple(MODES)) for who in WHO})
subjects = st.fixed_dictionaries({action: st.sampled_from(PROS) for action in ACTIONS})
STATES = [
    pytest.param(closed, pending, activated, id=f"{name}-{'activated' if activated else 'new'}")
    for name, closed, pending in (
        ("open", False, False),
        ("closed", True, False),
        ("deletion-pending", True, True),
    )
    for activated in (False, True)
]


def _build(rt: Runtime, w: World) -> Ins:
    ins = ins_for(next(_numbers))
    open_record(rt, ins)
    holder = rt.access(actors.patient_actor(rt, ins))
    if w.activated:
        # The holder's activated account, written directly (tests/test_portal_auth.py and
        # tests/test_takeover.py drive the real activation; argon2 here would cost seconds).
        with rt.engine.begin() as conn:
            portal.insert_account(
                conn,
                {
                    "id": uuid.uuid4().hex,
                    "login": ins.value,
                    "kind": "patient",
                    "patient_id": patients.find_patient_id(conn, ins.oid, ins.value),
                    "ins_oid": ins.oid,
                    "ins_value": ins.value,
                    "password_hash": "$argon2id$placeholder",
                    "created_at": rt.clock.now(),
                    "activated_at": rt.clock.now(),
                },
            )
        holder.activate_account(ins)
    for ps in w.consented:
        rt.access(pro(rt, ps)).declare_consent(ins)
    for ps in w.care_team:
        holder.declare_care_team(ins, ps)
    if w.gp:
        holder.update_settings(ins, medecin_traitant=w.gp)
    for ps in w.blocked:
        holder.block_professional(ins, ps)
    rt.access(system_actor("test")).add_representative(ins, "rep-1", "PARENT", "pere")
    if w.closed or w.deletion_pending:
        if w.deletion_pending:
            holder.request_deletion(ins)
        else:
            holder.close_record(ins, "fermeture")
    return ins


def _actor(rt: Runtime, who: str, ins: Ins) -> Actor:
    if who == "holder":
        return actors.patient_actor(rt, ins)
    if who == "rep":
        return Actor(ActorKind.REPRESENTATIVE, "rep-1", ins=ins)
    if who == "stranger":
        return actors.patient_actor(rt, ins_for(9999))
    if who == "unregistered-rep":
        return Actor(ActorKind.REPRESENTATIVE, "rep-2", ins=ins)
    if who == DESK:
        return actors.desk_actor(DESK, PHARMACY)
    if who == "desk-without-structure":
        return Actor(ActorKind.DESK_AGENT, "desk2")
    if who == "system":
        return system_actor("test")
    return pro(rt, who)


def _model_actor(rt: Runtime, who: str) -> access_model.ModelActor:
    kind = {
        "holder": "holder",
        "rep": "representative",
        "stranger": "stranger",
        "unregistered-rep": "stranger",
        DESK: "desk",
        "desk-without-structure": "desk",
        "system": "system",
    }.get(who, "professional")
    if kind == "desk":
        return access_model.ModelActor(
            "desk", who, PHARMACY if who == DESK else None, forbidden=False
        )
    if kind != "professional":
        return access_model.ModelActor(kind, who)
    actor = pro(rt, who)
    assert actor.profession is not None and actor.structure_id is not None
    model_pro = access_model.ModelProfessional(who, actor.structure_id, actor.profession)
    return access_model.ModelActor(
        "professional",
        who,
        actor.structure_id,
        model_pro,
        forbidden=who == OCCUPATIONAL_DOCTOR,  # the directory places them in occupational health
    )


def _run(gate: RecordAccess, rt: Runtime, ins: Ins, action: str, subject: str, kind: str) -> None:
    now = rt.clock.now()
    own = kind == "professional"
    calls = {
        "read": lambda: gate.search_documents(ins, statuses=None, limit=10),
        "history": lambda: gate.history(ins),
        "open": lambda: gate.open_record(
            ins, demographics_for(ins), channel=CreationChannel.PHARMACY, patient_consent=True
        ),
        "close": lambda: gate.close_record(ins, "fermeture"),
        "settings": lambda: gate.update_settings(ins, oppose_centre_15=True),
        "block": lambda: gate.block_professional(ins, subject),
        "unblock": lambda: gate.unblock_professional(ins, subject),
        "request_deletion": lambda: gate.request_deletion(ins),
        "withdraw_deletion": lambda: gate.withdraw_deletion(ins),
        "name_gp": lambda: gate.update_settings(ins, medecin_traitant=subject),
        "consent": lambda: gate.declare_consent(ins, None if own else subject),
        "care_team": lambda: gate.declare_care_team(ins, subject),
        "deposit": lambda: gate.deposit_document(ins, new_document(now), b"x"),
        "letter": lambda: gate.issue_activation_code(ins),
        "recovery": lambda: gate.start_account_recovery(ins),
        "reopen": lambda: gate.reopen_record(ins),
        "register_representative": lambda: gate.add_representative(ins, "rep-9", "TUTEUR", "t"),
        "shred_keys": lambda: gate.destroy_data_keys(ins),
        "declare_death": lambda: gate.declare_death(ins, now - timedelta(days=1)),
        "purge": lambda: gate.purge_record(ins),
    }
    calls[action]()


def _last(rt: Runtime, ins: Ins) -> tuple[str, str]:
    with rt.engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT e.outcome, e.reason FROM audit_events e JOIN patients p "
                "ON p.id = e.chain_id WHERE p.ins_value = :v ORDER BY e.seq DESC LIMIT 1"
            ),
            {"v": ins.value},
        ).one()
    return str(row.outcome), str(row.reason)


def _refused(error: DmpError) -> bool:
    """A refusal by the rules (not a state conflict or an input the action rejects)."""
    if isinstance(error, Forbidden | NotFound):
        return True
    return isinstance(error, Conflict) and error.reason == "DENY_RECORD_EXISTS"


@pytest.mark.slow
@pytest.mark.parametrize(("closed", "pending", "activated"), STATES)
@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=worlds, mode_of=modes, subject_of=subjects)
def test_every_action_is_refused_exactly_when_the_model_says(
    world: Runtime,
    closed: bool,
    pending: bool,
    activated: bool,
    drawn: World,
    mode_of: dict[str, str],
    subject_of: dict[str, str],
) -> None:
    """Every actor tries every action (a professional in the mode drawn for them)."""
    rt = world
    w = replace(drawn, closed=closed, deletion_pending=pending, activated=activated)
    shared = _build(rt, w)
    model_world = access_model.ModelWorld(
        docs={},
        consented=w.consented,
        care_team=w.care_team,
        blocked=w.blocked,
        gp=w.gp,
        mask_all=False,
        opposes_emergency=False,
        opposes_regulation=False,
    )
    record = access_model.ModelRecord(
        model_world, closed=closed, deletion_pending=pending, account_activated=activated
    )
    allowed_changes: list[tuple[str, str, str, str]] = []
    for who in WHO:
        model_actor = _model_actor(rt, who)
        professional = model_actor.kind == "professional"
        mode = mode_of[who] if professional else "normal"
        for action in ACTIONS:
            subject = subject_of[action]
            named = None if professional and action == "consent" else subject
            expected = access_model.may_act(record, model_actor, action, mode, named)
            if expected and action not in READ_ONLY:
                allowed_changes.append((who, action, mode, subject))
                continue  # run below, each on a fresh copy of the world
            _attempt(rt, shared, who, model_actor, action, mode, subject, expected, w)
    for who, action, mode, subject in allowed_changes:
        model_actor = _model_actor(rt, who)
        _attempt(rt, _build(rt, w), who, model_actor, action, mode, subject, True, w)


def _attempt(
    rt: Runtime,
    ins: Ins,
    who: str,
    model_actor: access_model.ModelActor,
    action: str,
    mode: str,
    subject: str,
    expected: bool,
    w: World,
) -> None:
    professional = model_actor.kind == "professional"
    gate = rt.access(
        _actor(rt, who, ins),
        MODES[mode],
        justification="patient inconscient" if mode == "bris_de_glace" else None,
        patient=ins if professional and mode != "normal" else None,
    )
    try:
        _run(gate, rt, ins, action, subject, model_actor.kind)
    except (Conflict, InvalidInput, Forbidden, NotFound) as error:
        refused = _refused(error)
        assert refused == (not expected), (who, action, mode, subject, error.message, w)
        if refused and error.reason and error.reason.startswith("DENY_"):
            assert _last(rt, ins) == ("denied", error.reason)
    else:
        assert expected, (who, action, mode, subject, "allowed", w)
