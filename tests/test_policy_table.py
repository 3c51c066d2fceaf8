"""Decision table for the pure policy: at least one case per rule (AC-n) and per exception.

Each row: who acts, in which mode, on which record state -> allowed or not, and the reason code.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from dmp.access.matrix import load_matrix
from dmp.access.policy import (
    Action,
    Reason,
    RecordFacts,
    decide,
    decide_open,
    may_modify,
)
from dmp.domain.codes import PurposeOfUse, RecordStatus
from dmp.domain.ins import OID_TEST, Ins
from dmp.identity.actor import Actor, ActorKind

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HOLDER_INS = Ins(OID_TEST, "180053700300148")
OTHER_INS = Ins(OID_TEST, "280053700300253")
MATRIX = load_matrix()

GP = Actor(ActorKind.PROFESSIONAL, "8100", structure_id="S-GP", profession="10", specialty="SM54")
DOCTOR = Actor(
    ActorKind.PROFESSIONAL, "8200", structure_id="S-H", profession="10", specialty="SM04"
)
NURSE = Actor(ActorKind.PROFESSIONAL, "8300", structure_id="S-N", profession="60")
PHARMA = Actor(
    ActorKind.PROFESSIONAL, "8400", structure_id="S-P", profession="21", pharmacist_section="A"
)
OCCUPATIONAL = replace(DOCTOR, id="8500", structure_kind="SA-STRAV")
NO_STRUCT = replace(NURSE, id="8600", structure_id=None)
HOLDER = Actor(ActorKind.PATIENT, "patient:1", ins=HOLDER_INS)
STRANGER = Actor(ActorKind.PATIENT, "patient:2", ins=OTHER_INS)
REP = Actor(ActorKind.REPRESENTATIVE, "rep-1", ins=HOLDER_INS)
FAKE_REP = Actor(ActorKind.REPRESENTATIVE, "rep-9", ins=HOLDER_INS)
DESK = Actor(ActorKind.DESK_AGENT, "desk-1", structure_id="S-P")
SYSTEM = Actor(ActorKind.SYSTEM, "system:job")

BASE = RecordFacts(
    status=RecordStatus.ACTIVE,
    closed_at=None,
    holder_ins=(HOLDER_INS.oid, HOLDER_INS.value),
    medecin_traitant=GP.id,
    initial_consent=True,
    representative_ids=frozenset({"rep-1"}),
)
N, BDG, C15 = PurposeOfUse.NORMAL, PurposeOfUse.EMERGENCY, PurposeOfUse.REGULATION
R, D, W = Action.READ_DOCUMENTS, Action.DEPOSIT_DOCUMENT, Action.UPDATE_DOCUMENT

CASES = [
    # rule, actor, action, purpose, facts changes, justification, expected reason
    (
        "AC-1 closed record refuses professionals",
        DOCTOR,
        R,
        N,
        {"status": RecordStatus.CLOSED, "consented": True},
        False,
        Reason.DENY_RECORD_CLOSED,
    ),
    (
        "AC-1 closed record refuses deposits",
        DOCTOR,
        D,
        N,
        {"status": RecordStatus.CLOSED},
        False,
        Reason.DENY_RECORD_CLOSED,
    ),
    (
        "AC-1 exception: the holder still reads a closed record",
        HOLDER,
        R,
        N,
        {"status": RecordStatus.CLOSED},
        False,
        Reason.ALLOW_HOLDER,
    ),
    (
        "AC-3 blocked despite consent",
        DOCTOR,
        R,
        N,
        {"blocked": True, "consented": True},
        False,
        Reason.DENY_BLOCKED,
    ),
    ("AC-3 blocked in emergency", DOCTOR, R, BDG, {"blocked": True}, True, Reason.DENY_BLOCKED),
    (
        "AC-3 blocked in regulation mode",
        DOCTOR,
        R,
        C15,
        {"blocked": True},
        False,
        Reason.DENY_BLOCKED,
    ),
    ("AC-3 blocked cannot deposit", DOCTOR, D, N, {"blocked": True}, False, Reason.DENY_BLOCKED),
    ("AC-3 blocked GP is refused", GP, R, N, {"blocked": True}, False, Reason.DENY_BLOCKED),
    ("AC-4 no consent", DOCTOR, R, N, {}, False, Reason.DENY_NO_CONSENT),
    ("AC-4 explicit consent", DOCTOR, R, N, {"consented": True}, False, Reason.ALLOW_CONSENT),
    (
        "AC-4 care team with the initial consent",
        DOCTOR,
        R,
        N,
        {"care_team": True},
        False,
        Reason.ALLOW_CARE_TEAM,
    ),
    (
        "AC-4 care team without the initial consent",
        DOCTOR,
        R,
        N,
        {"care_team": True, "initial_consent": False},
        False,
        Reason.DENY_NO_CONSENT,
    ),
    (
        "AC-4 consent declaration by the professional",
        NURSE,
        Action.DECLARE_CONSENT,
        N,
        {},
        False,
        Reason.ALLOW_CONSENT_DECLARATION,
    ),
    ("AC-7 GP reads without consent", GP, R, N, {}, False, Reason.ALLOW_MEDECIN_TRAITANT),
    ("AC-8 emergency with justification", DOCTOR, R, BDG, {}, True, Reason.ALLOW_BRIS_DE_GLACE),
    (
        "AC-8 emergency without justification",
        DOCTOR,
        R,
        BDG,
        {},
        False,
        Reason.DENY_JUSTIFICATION_REQUIRED,
    ),
    (
        "AC-8 emergency window still open",
        DOCTOR,
        R,
        BDG,
        {"emergency_until": NOW + timedelta(days=1)},
        False,
        Reason.ALLOW_BRIS_DE_GLACE,
    ),
    (
        "AC-8 emergency window expired",
        DOCTOR,
        R,
        BDG,
        {"emergency_until": NOW - timedelta(seconds=1)},
        False,
        Reason.DENY_JUSTIFICATION_REQUIRED,
    ),
    (
        "AC-8 emergency opposed",
        DOCTOR,
        R,
        BDG,
        {"oppose_bris_de_glace": True},
        True,
        Reason.DENY_OPPOSED_EMERGENCY,
    ),
    ("AC-9 regulation centre", DOCTOR, R, C15, {}, False, Reason.ALLOW_CENTRE_15),
    (
        "AC-9 regulation opposed",
        DOCTOR,
        R,
        C15,
        {"oppose_centre_15": True},
        False,
        Reason.DENY_OPPOSED_CENTRE_15,
    ),
    (
        "AC-9 regulation opposition is separate from emergency's",
        DOCTOR,
        R,
        C15,
        {"oppose_bris_de_glace": True},
        False,
        Reason.ALLOW_CENTRE_15,
    ),
    ("AC-9 only physicians regulate", NURSE, R, C15, {}, False, Reason.DENY_NOT_REGULATOR),
    ("AC-10 deposit without read authorisation", NURSE, D, N, {}, False, Reason.ALLOW_CARE_DEPOSIT),
    ("AC-10 deposit in emergency mode", DOCTOR, D, BDG, {}, False, Reason.ALLOW_CARE_DEPOSIT),
    ("AC-10 deposit needs a structure", NO_STRUCT, D, N, {}, False, Reason.DENY_NO_STRUCTURE),
    ("AC-12 representative reads", REP, R, N, {}, False, Reason.ALLOW_REPRESENTATIVE),
    ("AC-12 unregistered representative", FAKE_REP, R, N, {}, False, Reason.DENY_NOT_HOLDER),
    (
        "AC-16 occupational doctor refused despite consent",
        OCCUPATIONAL,
        R,
        N,
        {"consented": True},
        False,
        Reason.DENY_FORBIDDEN_ACTOR,
    ),
    (
        "AC-16 occupational doctor refused in emergency",
        OCCUPATIONAL,
        R,
        BDG,
        {},
        True,
        Reason.DENY_FORBIDDEN_ACTOR,
    ),
    (
        "AC-17 GP reads every trace",
        GP,
        Action.READ_HISTORY,
        N,
        {},
        False,
        Reason.ALLOW_MEDECIN_TRAITANT,
    ),
    (
        "AC-17 professional reads own traces",
        NURSE,
        Action.READ_HISTORY,
        N,
        {},
        False,
        Reason.ALLOW_OWN_TRACES,
    ),
    (
        "AC-17 holder reads every trace",
        HOLDER,
        Action.READ_HISTORY,
        N,
        {},
        False,
        Reason.ALLOW_HOLDER,
    ),
    ("holder controls", HOLDER, Action.MANAGE_RECORD, N, {}, False, Reason.ALLOW_HOLDER),
    (
        "professional cannot use holder controls",
        DOCTOR,
        Action.MANAGE_RECORD,
        N,
        {"consented": True},
        False,
        Reason.DENY_ACTOR_KIND,
    ),
    ("another patient", STRANGER, R, N, {}, False, Reason.DENY_NOT_HOLDER),
    ("desk agents do not read", DESK, R, N, {}, False, Reason.DENY_ACTOR_KIND),
    ("system jobs", SYSTEM, R, N, {}, False, Reason.ALLOW_SYSTEM),
    ("only system jobs shred", HOLDER, Action.DESTROY_KEYS, N, {}, False, Reason.DENY_ACTOR_KIND),
    # The activation letter (an online account's one-time code): printed at a desk.
    ("a desk prints the letter", DESK, Action.ISSUE_ACTIVATION, N, {}, False, Reason.ALLOW_OPEN),
    (
        "a professional of a structure prints it too",
        PHARMA,
        Action.ISSUE_ACTIVATION,
        N,
        {},
        False,
        Reason.ALLOW_OPEN,
    ),
    (
        "no letter for a closed record",
        DESK,
        Action.ISSUE_ACTIVATION,
        N,
        {"status": RecordStatus.CLOSED},
        False,
        Reason.DENY_RECORD_CLOSED,
    ),
    (
        "the holder does not print their own code",
        HOLDER,
        Action.ISSUE_ACTIVATION,
        N,
        {},
        False,
        Reason.DENY_ACTOR_KIND,
    ),
    (
        "nor does a representative",
        REP,
        Action.ISSUE_ACTIVATION,
        N,
        {},
        False,
        Reason.DENY_ACTOR_KIND,
    ),
    (
        "a professional with no structure does not",
        NO_STRUCT,
        Action.ISSUE_ACTIVATION,
        N,
        {},
        False,
        Reason.DENY_NO_STRUCTURE,
    ),
    # The lifecycle (issue 11): reopening at a desk or by the holder; deletion asked by the
    # holder; death and purge by system jobs only.
    ("the holder reopens", HOLDER, Action.REOPEN_RECORD, N, {}, False, Reason.ALLOW_HOLDER),
    ("a desk reopens", DESK, Action.REOPEN_RECORD, N, {}, False, Reason.ALLOW_OPEN),
    (
        "the holder asks for deletion",
        HOLDER,
        Action.REQUEST_DELETION,
        N,
        {},
        False,
        Reason.ALLOW_HOLDER,
    ),
    (
        "a professional does not ask for deletion",
        GP,
        Action.REQUEST_DELETION,
        N,
        {"consented": True},
        False,
        Reason.DENY_ACTOR_KIND,
    ),
    (
        "a desk does not ask for deletion",
        DESK,
        Action.REQUEST_DELETION,
        N,
        {},
        False,
        Reason.DENY_ACTOR_KIND,
    ),
    (
        "only system jobs declare a death",
        HOLDER,
        Action.DECLARE_DEATH,
        N,
        {},
        False,
        Reason.DENY_ACTOR_KIND,
    ),
    (
        "only system jobs purge",
        GP,
        Action.PURGE_RECORD,
        N,
        {"consented": True},
        False,
        Reason.DENY_ACTOR_KIND,
    ),
    ("system jobs purge", SYSTEM, Action.PURGE_RECORD, N, {}, False, Reason.ALLOW_SYSTEM),
    (
        "AC-13 modification is narrowed to authored documents",
        NURSE,
        W,
        N,
        {},
        False,
        Reason.ALLOW_AUTHOR,
    ),
]


@pytest.mark.parametrize(
    ("rule", "actor", "action", "purpose", "changes", "justified", "expected"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_decision_table(
    rule: str,
    actor: Actor,
    action: Action,
    purpose: PurposeOfUse,
    changes: dict[str, object],
    justified: bool,
    expected: Reason,
) -> None:
    facts = replace(BASE, **changes)  # type: ignore[arg-type]
    decision = decide(actor, action, purpose, facts, MATRIX, NOW, has_justification=justified)
    assert decision.reason is expected, rule
    assert decision.allowed == expected.value.startswith("ALLOW"), rule


def test_emergency_opens_a_window_only_when_none_is_open() -> None:
    first = decide(DOCTOR, R, BDG, BASE, MATRIX, NOW, has_justification=True)
    assert first.open_emergency
    during = replace(BASE, emergency_until=NOW + timedelta(days=2))
    assert not decide(DOCTOR, R, BDG, during, MATRIX, NOW, has_justification=True).open_emergency


def test_visibility_per_mode() -> None:
    consented = replace(BASE, consented=True)
    v = decide(DOCTOR, R, N, consented, MATRIX, NOW).visibility
    assert v is not None
    assert v.masked == "authors"
    assert v.masked_authors == (DOCTOR.id,)
    assert v.masked_structures == ("S-H",)
    assert v.type_codes is None  # physicians read every type (AC-5)
    gp = decide(GP, R, N, BASE, MATRIX, NOW).visibility
    assert gp is not None
    assert gp.masked == "all"  # AC-7: masked documents included
    assert not gp.mask_everything
    pharma = decide(PHARMA, R, N, consented, MATRIX, NOW).visibility
    assert pharma is not None
    assert pharma.type_codes is not None
    assert "60593-1" in pharma.type_codes
    assert "34112-3" not in pharma.type_codes
    masked_all = decide(
        DOCTOR, R, BDG, replace(BASE, mask_all=True), MATRIX, NOW, has_justification=True
    ).visibility
    assert masked_all is not None
    assert masked_all.mask_everything  # AC-6: mask-all applies in emergency too
    holder = decide(HOLDER, R, N, BASE, MATRIX, NOW).visibility
    assert holder is not None
    assert holder.hide_invisible_patient_at == NOW
    assert not holder.hide_invisible_representatives
    rep = decide(REP, R, N, BASE, MATRIX, NOW).visibility
    assert rep is not None
    assert rep.hide_invisible_representatives


@pytest.mark.parametrize(
    ("actor", "author", "structure", "kind", "expected"),
    [
        (DOCTOR, DOCTOR.id, "S-H", "professional", Reason.ALLOW_AUTHOR),
        (replace(DOCTOR, id="8201"), DOCTOR.id, "S-H", "professional", Reason.ALLOW_AUTHOR),
        (NURSE, DOCTOR.id, "S-H", "professional", Reason.DENY_NOT_AUTHOR),
        (HOLDER, HOLDER.id, None, "patient", Reason.ALLOW_HOLDER),
        (HOLDER, DOCTOR.id, "S-H", "professional", Reason.DENY_NOT_AUTHOR),
        (SYSTEM, DOCTOR.id, "S-H", "professional", Reason.ALLOW_SYSTEM),
    ],
)
def test_may_modify(
    actor: Actor, author: str, structure: str | None, kind: str, expected: Reason
) -> None:
    assert may_modify(actor, author, structure, kind).reason is expected


@pytest.mark.parametrize(
    ("actor", "exists", "expected"),
    [
        (DESK, False, Reason.ALLOW_OPEN),
        (DOCTOR, False, Reason.ALLOW_OPEN),
        (HOLDER, False, Reason.ALLOW_HOLDER),
        (STRANGER, False, Reason.DENY_NOT_HOLDER),
        (SYSTEM, False, Reason.ALLOW_SYSTEM),
        (DESK, True, Reason.DENY_RECORD_EXISTS),
        (NO_STRUCT, False, Reason.DENY_NO_STRUCTURE),
        (OCCUPATIONAL, False, Reason.DENY_FORBIDDEN_ACTOR),
    ],
)
def test_decide_open(actor: Actor, exists: bool, expected: Reason) -> None:
    d = decide_open(actor, MATRIX, record_exists=exists, for_ins=(HOLDER_INS.oid, HOLDER_INS.value))
    assert d.reason is expected
