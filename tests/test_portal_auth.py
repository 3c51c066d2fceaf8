"""Portal authentication: activation codes, passwords, TOTP, lockout, sessions.

Each rule is checked against what the issue and docs/portals.md say, never against the
service's own answer: a code works once, expires, and is stored only as a hash; a failure never
tells whether an identifier exists; five failures lock an account; TOTP codes do not replay;
sessions end when idle.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pyotp
import pytest
import sqlalchemy as sa

from dmp.access import codes
from dmp.auth.portal import ENROL, FULL, SECOND, Portal, Session
from dmp.auth.throttle import LOGIN_SOURCE
from dmp.clock import FixedClock
from dmp.errors import Conflict, Forbidden, InvalidInput, NotAuthenticated, TooManyRequests
from dmp.identity.actor import ActorKind, system_actor
from dmp.records.schema import activation_codes, portal_accounts
from dmp.runtime import Runtime
from tests.factories import GP, PHARMACY, desk, ins_for, open_record, pro

PASSWORD = "correct horse battery staple"


def _activate(portal: Portal, clock: FixedClock, login: str, code: str) -> tuple[Session, str]:
    session = portal.start_activation(login, code, "10.0.0.1")
    enrol = portal.set_password(session, PASSWORD, PASSWORD)
    secret = portal.enrolment(enrol).secret
    full, _ = portal.confirm_enrolment(enrol, pyotp.TOTP(secret).at(clock.now()))
    return full, secret


def _login(portal: Portal, clock: FixedClock, login: str, secret: str) -> Session:
    clock.advance(timedelta(seconds=30))
    second = portal.login(login, PASSWORD, "10.0.0.2")
    return portal.second_factor(second, pyotp.TOTP(secret).at(clock.now()), "10.0.0.2")


@pytest.fixture
def portal(world: Runtime) -> Portal:
    return Portal(world)


def test_the_desk_letter_code_is_stored_as_a_hash_and_works_once(
    world: Runtime, portal: Portal, clock: FixedClock
) -> None:
    ins = ins_for(1)
    open_record(world, ins)
    letter = world.access(desk()).issue_activation_code(ins)
    assert letter.login == ins.value
    with world.engine.connect() as conn:
        stored = conn.execute(sa.select(activation_codes.c.code_hash)).scalars().all()
    plain = letter.code.replace("-", "")
    assert stored == [hashlib.sha256(plain.encode()).hexdigest()]
    assert all(letter.code not in s and plain not in s for s in stored)

    session, _ = _activate(portal, clock, letter.login, letter.code)
    assert session.stage == FULL and session.kind is ActorKind.PATIENT
    # The holder's gate works, and the activation was counted (record.activated_at).
    assert portal.gate(session).read_record(ins).ins == ins
    with pytest.raises(NotAuthenticated):
        portal.start_activation(letter.login, letter.code, "10.0.0.1")


def test_a_code_is_spent_when_the_password_is_set_not_before(
    world: Runtime, portal: Portal
) -> None:
    ins = ins_for(2)
    open_record(world, ins)
    letter = world.access(desk()).issue_activation_code(ins)
    first = portal.start_activation(letter.login, letter.code, "10.0.0.1")
    second = portal.start_activation(letter.login, letter.code, "10.0.0.1")
    portal.set_password(first, PASSWORD, PASSWORD)
    with pytest.raises(NotAuthenticated):
        portal.set_password(second, PASSWORD, PASSWORD)  # two tabs: the code works once


def test_a_code_expires_and_a_new_letter_cancels_the_previous_code(
    world: Runtime, portal: Portal, clock: FixedClock
) -> None:
    ins = ins_for(3)
    open_record(world, ins)
    old = world.access(desk()).issue_activation_code(ins)
    new = world.access(desk()).issue_activation_code(ins)
    with pytest.raises(NotAuthenticated):
        portal.start_activation(old.login, old.code, "10.0.0.1")
    assert new.expires_at == clock.now() + timedelta(days=world.settings.activation_code_days)
    clock.set(new.expires_at)
    with pytest.raises(NotAuthenticated):
        portal.start_activation(new.login, new.code, "10.0.0.1")


def test_only_a_desk_or_a_professional_of_a_structure_prints_a_letter(
    world: Runtime, portal: Portal, clock: FixedClock
) -> None:
    ins = ins_for(4)
    open_record(world, ins)
    pharmacist_letter = world.access(pro(world, GP)).issue_activation_code(ins)
    session, _ = _activate(portal, clock, pharmacist_letter.login, pharmacist_letter.code)
    with pytest.raises(Forbidden):
        portal.gate(session).issue_activation_code(ins)  # never the holder for themselves
    portal.gate(session).close_record(ins, "je ferme")
    with pytest.raises(Forbidden):
        world.access(desk()).issue_activation_code(ins)  # not for a closed record


def test_failures_say_the_same_for_unknown_and_known_identifiers_and_hold_back_the_source(
    world: Runtime, portal: Portal, clock: FixedClock
) -> None:
    ins = ins_for(5)
    open_record(world, ins)
    letter = world.access(desk()).issue_activation_code(ins)
    _, secret = _activate(portal, clock, letter.login, letter.code)

    messages = set()
    for login in (letter.login, "999999999999999"):
        with pytest.raises(NotAuthenticated) as refused:
            portal.login(login, "not the password", "10.0.0.3")
        messages.add(refused.value.message)
    assert len(messages) == 1

    for _ in range(LOGIN_SOURCE.count):
        with pytest.raises(NotAuthenticated):
            portal.login(letter.login, "still wrong", "10.0.0.4")
    # That source is held back now: even the right password is refused from it, with the
    # same message; another source is not (a stranger's failures never lock the holder out).
    with pytest.raises(NotAuthenticated) as locked:
        portal.login(letter.login, PASSWORD, "10.0.0.4")
    assert locked.value.message in messages
    assert portal.login(letter.login, PASSWORD, "10.0.0.5").stage == SECOND
    # The hold lasts 1, then 2, 4... minutes: after it, the right password works again.
    clock.advance(timedelta(minutes=5))
    second = portal.login(letter.login, PASSWORD, "10.0.0.4")
    assert portal.second_factor(second, pyotp.TOTP(secret).at(clock.now()), "10.0.0.4").stage == (
        FULL
    )


def test_totp_codes_do_not_replay_and_recovery_codes_work_once(
    world: Runtime, portal: Portal, clock: FixedClock
) -> None:
    ins = ins_for(6)
    open_record(world, ins)
    letter = world.access(desk()).issue_activation_code(ins)
    session = portal.start_activation(letter.login, letter.code, "10.0.0.1")
    enrol = portal.set_password(session, PASSWORD, PASSWORD)
    assert enrol.stage == ENROL
    secret = portal.enrolment(enrol).secret
    right = pyotp.TOTP(secret).at(clock.now())
    with pytest.raises(InvalidInput):
        portal.confirm_enrolment(enrol, f"{(int(right) + 1) % 1_000_000:06d}")
    code = pyotp.TOTP(secret).at(clock.now())
    _, recovery = portal.confirm_enrolment(enrol, code)
    assert len(recovery) == 8 and len(set(recovery)) == 8

    second = portal.login(letter.login, PASSWORD, "10.0.0.5")
    assert second.stage == SECOND
    with pytest.raises(NotAuthenticated):
        portal.second_factor(second, code, "10.0.0.5")  # the enrolment code, same time step
    full = portal.second_factor(second, recovery[0].lower(), "10.0.0.5")
    assert full.stage == FULL and full.token != second.token  # a new session id at login
    again = portal.login(letter.login, PASSWORD, "10.0.0.5")
    with pytest.raises(NotAuthenticated):
        portal.second_factor(again, recovery[0], "10.0.0.5")
    with pytest.raises(NotAuthenticated):
        portal.gate(again)  # the password alone opens nothing


def test_sessions_end_when_idle_and_at_logout(
    world: Runtime, portal: Portal, clock: FixedClock
) -> None:
    ins = ins_for(7)
    open_record(world, ins)
    letter = world.access(desk()).issue_activation_code(ins)
    session, secret = _activate(portal, clock, letter.login, letter.code)
    clock.advance(timedelta(minutes=world.settings.portal_idle_minutes - 1))
    assert portal.session(session.token) is not None  # activity keeps it alive
    clock.advance(timedelta(minutes=world.settings.portal_idle_minutes - 1))
    assert portal.session(session.token) is not None
    clock.advance(timedelta(minutes=world.settings.portal_idle_minutes + 1))
    assert portal.session(session.token) is None
    fresh = _login(portal, clock, letter.login, secret)
    portal.logout(fresh.token)
    assert portal.session(fresh.token) is None


def test_passwords_are_argon2id_and_weak_ones_refused(
    world: Runtime, portal: Portal, clock: FixedClock
) -> None:
    ins = ins_for(8)
    open_record(world, ins)
    letter = world.access(desk()).issue_activation_code(ins)
    session = portal.start_activation(letter.login, letter.code, "10.0.0.1")
    for weak, confirm in (
        ("short", "short"),
        ("aaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaa"),
        (f"x{letter.login}y", f"x{letter.login}y"),
        (PASSWORD, PASSWORD + "!"),
    ):
        with pytest.raises(InvalidInput):
            portal.set_password(session, weak, confirm)
    portal.set_password(session, PASSWORD, PASSWORD)
    with world.engine.connect() as conn:
        stored = conn.execute(sa.select(portal_accounts.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_attempts_from_one_address_are_rate_limited(world: Runtime, portal: Portal) -> None:
    for _ in range(20):
        with pytest.raises(NotAuthenticated):
            portal.login("nobody", "wrong password", "10.9.9.9")
    with pytest.raises(TooManyRequests) as limited:
        portal.login("nobody", "wrong password", "10.9.9.9")
    assert limited.value.retry_after > 0
    with pytest.raises(NotAuthenticated):
        portal.login("nobody", "wrong password", "10.9.9.8")  # another address is not held


def test_invitations_check_the_directory_and_the_record(world: Runtime, portal: Portal) -> None:
    with pytest.raises(NotAuthenticated):
        portal.invite(kind=ActorKind.PROFESSIONAL, login="899999999999", by="t")
    with pytest.raises(NotAuthenticated):
        portal.invite(kind=ActorKind.PROFESSIONAL, login=GP, by="t", structure_id=PHARMACY)
    ins = ins_for(9)
    open_record(world, ins)
    from dmp.errors import NotFound

    with pytest.raises(NotFound):
        portal.invite(kind=ActorKind.REPRESENTATIVE, login="rep-x", by="t", ins=ins)
    # Through the gate (issue 22: the record was read unaudited): the refusal and, once the
    # representative is registered, the invitation are in the patient's trail.
    world.access(system_actor("op")).add_representative(ins, "rep-x", "PARENT EX", "parent")
    portal.invite(kind=ActorKind.REPRESENTATIVE, login="rep-x", by="t", ins=ins)
    with world.engine.connect() as conn:
        trail = conn.execute(
            sa.text(
                "SELECT actor_id, action, outcome, target FROM audit_events "
                "WHERE action = 'representative.invite' ORDER BY seq"
            )
        ).all()
    assert [tuple(t) for t in trail] == [
        ("system:portal-invite", "representative.invite", "denied", "rep-x"),
        ("system:portal-invite", "representative.invite", "success", "rep-x"),
    ]
    code, _ = portal.invite(kind=ActorKind.PROFESSIONAL, login=GP, by="t")
    assert codes.code_hash(code) != code
    with pytest.raises(Conflict):
        portal.invite(kind=ActorKind.DESK_AGENT, login=GP, by="t", structure_id=PHARMACY)
