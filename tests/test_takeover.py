"""No one takes over a record (issue 21): each attack tried as an attacker would, first on the
code before this issue (where each of these tests failed), then against the rules written in
docs/access-rules.md and docs/portals.md.

- A desk (or any professional of a structure) that knows a holder's INS prints no letter for an
  activated account: it may only start a recovery, whose code goes to the holder and never to
  the desk; the holder's password and sessions keep working until the holder uses it; every
  letter, recovery and reset is told to the holder and is in their history with who started it.
- A blocked professional can do nothing on the record, through any action.
- A reopening over a pending deletion request is refused; only the holder withdraws it.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from datetime import timedelta

import pyotp
import pytest
import sqlalchemy as sa

from dmp.auth import actors
from dmp.auth.portal import FULL, SECOND, Portal, Session
from dmp.clock import FixedClock
from dmp.config import Settings
from dmp.domain.codes import PurposeOfUse
from dmp.domain.ins import Ins
from dmp.errors import Conflict, DmpError, Forbidden, NotAuthenticated
from dmp.identity.actor import Actor, ActorKind, system_actor
from dmp.jobs import notify
from dmp.records.schema import audit_events, notifications, patients
from dmp.runtime import Runtime
from tests.factories import (
    CARDIOLOGIST,
    GP,
    NURSE,
    desk,
    ins_for,
    load_directory,
    new_document,
    open_record,
    pro,
)
from tests.mail import SmtpServer

PASSWORD = "une phrase de passe assez longue"
NEW_PASSWORD = "une autre phrase de passe, neuve"
_CODE = re.compile(r"code de récupération à usage unique : ([A-Z0-9-]+)\.")


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def mailing(settings: Settings, clock: FixedClock, smtp: SmtpServer) -> Iterator[Runtime]:
    changes = {"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "smtp_security": "plain"}
    runtime = Runtime.start(settings.model_copy(update=changes), clock=clock)
    load_directory(runtime)
    yield runtime
    runtime.close()


def _activate(portal: Portal, clock: FixedClock, login: str, code: str) -> tuple[Session, str]:
    session = portal.start_activation(login, code, "10.0.0.1")
    enrol = portal.set_password(session, PASSWORD, PASSWORD)
    secret = portal.enrolment(enrol).secret
    full, _ = portal.confirm_enrolment(enrol, pyotp.TOTP(secret).at(clock.now()))
    return full, secret


def _holder(rt: Runtime, clock: FixedClock, i: int, contact: str | None = None) -> Ins:
    """A record whose holder activated their account (and gave an e-mail address)."""
    ins = ins_for(i)
    open_record(rt, ins)
    letter = rt.access(desk()).issue_activation_code(ins)
    portal = Portal(rt)
    session, _ = _activate(portal, clock, letter.login, letter.code)
    if contact:
        portal.set_preferences(session, {"canal": "courriel", "contact": contact})
    return ins


def _notices(rt: Runtime, ins: Ins) -> list[sa.Row[tuple[str, str, bytes | None]]]:
    n = notifications
    with rt.engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(n.c.kind, n.c.status, n.c.secret_sealed)
                .join(patients, patients.c.id == n.c.patient_id)
                .where(patients.c.ins_value == ins.value)
                .order_by(n.c.created_at, n.c.kind)
            )
        )


def test_a_desk_prints_no_letter_for_an_activated_account(
    world: Runtime, clock: FixedClock
) -> None:
    ins = _holder(world, clock, 1)
    portal = Portal(world)
    with pytest.raises(Forbidden) as refused:
        world.access(desk()).issue_activation_code(ins)
    assert refused.value.reason == "DENY_ACCOUNT_ACTIVE"
    # A professional of a structure neither.
    with pytest.raises(Forbidden):
        world.access(pro(world, CARDIOLOGIST)).issue_activation_code(ins)
    # The attempt is in the holder's trail, as a refusal naming the desk.
    traces = world.access(actors.patient_actor(world, ins)).history(ins, limit=10).items
    assert any(
        (t.action, t.actor_id, t.outcome, t.reason)
        == ("account.activation_code", "desk-1", "denied", "DENY_ACCOUNT_ACTIVE")
        for t in traces
    )
    # The holder's password still works.
    assert portal.login(ins.value, PASSWORD, "10.0.0.9").stage == SECOND


def test_a_recovery_code_goes_to_the_holder_and_never_to_the_desk(
    mailing: Runtime, clock: FixedClock, smtp: SmtpServer
) -> None:
    rt = mailing
    ins = _holder(rt, clock, 2, contact="titulaire@patient.invalid")
    portal = Portal(rt)
    before = portal.login(ins.value, PASSWORD, "10.0.0.2")
    smtp.inbox.messages.clear()

    started = rt.access(desk()).start_account_recovery(ins)
    assert started.channel == "courriel"
    assert started.expires_at == clock.now() + timedelta(hours=rt.settings.recovery_code_hours)
    assert not hasattr(started, "code")
    # Until the holder uses the code, their password and sessions keep working.
    assert portal.session(before.token) is not None
    assert portal.login(ins.value, PASSWORD, "10.0.0.2").stage == SECOND

    # The code leaves only inside the notice to the holder, sealed in the outbox.
    [recovery] = [n for n in _notices(rt, ins) if n.kind == "account_recovery"]
    assert recovery.secret_sealed is not None
    notify.deliver_due(rt, "test-worker")
    [mail] = [m for m in smtp.inbox.messages if "récupération" in str(m["Subject"])]
    assert mail["To"] == "titulaire@patient.invalid"
    body = mail.get_content()
    found = _CODE.search(body)
    assert found, body
    code = found.group(1)
    assert "STRUCTURE 390000000000017" in body  # who started it
    # Delivered: the outbox forgets the code.
    [recovery] = [n for n in _notices(rt, ins) if n.kind == "account_recovery"]
    assert (recovery.status, recovery.secret_sealed) == ("sent", None)
    with rt.engine.connect() as conn:
        dump = repr(conn.execute(sa.select(notifications)).all())
    assert code not in dump and code.replace("-", "") not in dump

    # The holder uses it: a new password; the old one and every session end.
    session = portal.start_activation(ins.value, code, "10.0.0.3")
    enrol = portal.set_password(session, NEW_PASSWORD, NEW_PASSWORD)
    assert portal.session(before.token) is None
    with pytest.raises(NotAuthenticated):
        portal.login(ins.value, PASSWORD, "10.0.0.3")
    secret = portal.enrolment(enrol).secret
    full, _ = portal.confirm_enrolment(enrol, pyotp.TOTP(secret).at(clock.now()))
    assert full.stage == FULL
    with pytest.raises(NotAuthenticated):  # the code worked once
        portal.start_activation(ins.value, code, "10.0.0.3")

    # The reset is told to the holder, and both steps are in the history with who did them.
    notify.deliver_due(rt, "test-worker")
    subjects = [str(m["Subject"]) for m in smtp.inbox.messages]
    assert "Le mot de passe de votre compte a été changé" in subjects
    traces = portal.gate(full).history(ins, limit=20).items
    seen = {(t.action, t.actor_id, t.outcome) for t in traces}
    assert ("account.recovery", "desk-1", "success") in seen
    assert ("account.reset", "system:portal", "success") in seen


def test_one_recovery_at_a_time(world: Runtime, clock: FixedClock) -> None:
    ins = _holder(world, clock, 3)
    world.access(desk()).start_account_recovery(ins)
    with pytest.raises(Conflict) as twice:
        world.access(pro(world, CARDIOLOGIST)).start_account_recovery(ins)
    assert twice.value.french and "déjà en cours" in twice.value.french
    clock.advance(timedelta(hours=world.settings.recovery_code_hours, seconds=1))
    world.access(desk()).start_account_recovery(ins)  # the first code expired


def test_a_recovery_needs_an_activated_account_and_is_not_the_holders_to_start(
    world: Runtime, clock: FixedClock
) -> None:
    ins = ins_for(4)
    open_record(world, ins)
    with pytest.raises(Forbidden) as refused:
        world.access(desk()).start_account_recovery(ins)
    assert refused.value.reason == "DENY_ACCOUNT_NOT_ACTIVE"
    holder = world.access(actors.patient_actor(world, ins))
    with pytest.raises(Forbidden):
        holder.start_account_recovery(ins)


def test_without_a_contact_the_code_goes_by_post(world: Runtime, clock: FixedClock) -> None:
    ins = _holder(world, clock, 5)
    started = world.access(desk()).start_account_recovery(ins)
    assert started.channel == "courrier"
    report = notify.deliver_due(world, "test-worker")
    assert report.sent == 1
    [letter] = sorted(world.settings.effective_letters_dir.glob("*.txt"))
    assert stat.S_IMODE(os.stat(letter).st_mode) == 0o600
    text = letter.read_text(encoding="utf-8")
    assert _CODE.search(text), text
    spaced = " ".join((ins.value[0], ins.value[1:3], ins.value[3:5], ins.value[5:7]))
    assert spaced in text and "Camille EXEMPLE" in text
    [row] = [n for n in _notices(world, ins) if n.kind == "account_recovery"]
    assert (row.status, row.secret_sealed) == ("sent", None)


def test_without_a_mail_service_a_code_for_an_e_mail_contact_goes_by_post(
    world: Runtime, clock: FixedClock
) -> None:
    """A holder gave an e-mail address, but the service has no SMTP server: the recovery
    code is neither lost nor left unsent (it was skipped and forgotten), it goes by post; the
    desk is told so. The worker read the contact through the gate: it is in the trail."""
    assert not world.settings.smtp_host
    ins = _holder(world, clock, 7, contact="titulaire@patient.invalid")
    started = world.access(desk()).start_account_recovery(ins)
    assert started.channel == "courrier"
    assert notify.deliver_due(world, "test-worker").sent >= 1
    [letter] = sorted(world.settings.effective_letters_dir.glob("*.txt"))
    assert _CODE.search(letter.read_text(encoding="utf-8"))
    [row] = [n for n in _notices(world, ins) if n.kind == "account_recovery"]
    assert (row.status, row.secret_sealed) == ("sent", None)
    traces = world.access(actors.patient_actor(world, ins)).history(ins, limit=50).items
    assert ("notifications.contact", "system:notify", "success") in {
        (t.action, t.actor_id, t.outcome) for t in traces
    }


def test_the_worker_falls_back_to_post_when_the_channel_went_away(
    world: Runtime, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The desk was told "courriel" (a mail service then), but none is left when the worker
    runs: the code still reaches the holder, by post."""
    from dmp.access import records as access_records

    ins = _holder(world, clock, 8, contact="titulaire@patient.invalid")
    monkeypatch.setattr(access_records, "_channel_of", lambda prefs, settings: "courriel")
    assert world.access(desk()).start_account_recovery(ins).channel == "courriel"
    notify.deliver_due(world, "test-worker")
    [row] = [n for n in _notices(world, ins) if n.kind == "account_recovery"]
    assert (row.status, row.secret_sealed) == ("sent", None)
    [letter] = sorted(world.settings.effective_letters_dir.glob("*.txt"))
    assert _CODE.search(letter.read_text(encoding="utf-8"))


def test_a_letter_is_told_to_the_holder_and_in_the_history(
    world: Runtime, clock: FixedClock
) -> None:
    ins = ins_for(6)
    open_record(world, ins)
    world.access(desk()).issue_activation_code(ins)
    assert "activation_letter" in [n.kind for n in _notices(world, ins)]
    traces = world.access(actors.patient_actor(world, ins)).history(ins, limit=5).items
    assert ("account.activation_code", "desk-1") in {(t.action, t.actor_id) for t in traces}


def test_a_blocked_professional_can_do_nothing_on_the_record(
    world: Runtime, clock: FixedClock
) -> None:
    """The nurse's attack: blocked, she printed a letter, activated the holder's account,
    unblocked herself, named herself GP and read the record. Every step is refused now, and
    so is everything else she could try, in every mode."""
    ins = ins_for(7)
    open_record(world, ins)
    holder = world.access(actors.patient_actor(world, ins))
    holder.block_professional(ins, NURSE)
    nurse = pro(world, NURSE)
    attempts = {
        "letter": lambda g: g.issue_activation_code(ins),
        "recovery": lambda g: g.start_account_recovery(ins),
        "consent": lambda g: g.declare_consent(ins),
        "care team": lambda g: g.declare_care_team(ins, CARDIOLOGIST),
        "deposit": lambda g: g.deposit_document(ins, new_document(clock.now()), b"x"),
        "read": lambda g: g.search_documents(ins, statuses=None, limit=10),
        "record": lambda g: g.read_record(ins),
        "history": lambda g: g.history(ins),
    }
    for mode in PurposeOfUse:
        gate = world.access(nurse, mode, justification="patient inconscient", patient=ins)
        for name, attempt in attempts.items():
            with pytest.raises(DmpError) as refused:
                attempt(gate)
            assert refused.value.reason == "DENY_BLOCKED", (name, mode)
    # On a closed record, the reopening too.
    holder.close_record(ins, "je ferme")
    with pytest.raises(Forbidden) as refused:
        world.access(nurse).reopen_record(ins)
    assert refused.value.reason == "DENY_BLOCKED"
    holder.reopen_record(ins)
    # Nobody lets her back in around the block: not the holder naming her GP or authorising
    # her (the holder unblocks first), not a colleague adding her to the care team.
    with pytest.raises(Forbidden) as refused:
        holder.update_settings(ins, medecin_traitant=NURSE)
    assert refused.value.reason == "DENY_SUBJECT_BLOCKED"
    with pytest.raises(Forbidden):
        holder.declare_consent(ins, NURSE)
    gp = world.access(pro(world, GP))
    gp.declare_consent(ins)
    with pytest.raises(Forbidden) as refused:
        gp.declare_care_team(ins, NURSE)
    assert refused.value.reason == "DENY_SUBJECT_BLOCKED"
    # Unblocked by the holder, she may be named again.
    holder.unblock_professional(ins, NURSE)
    holder.update_settings(ins, medecin_traitant=NURSE)


def test_a_blocked_desk_agent_is_refused_too(world: Runtime, clock: FixedClock) -> None:
    ins = ins_for(8)
    open_record(world, ins)
    holder = world.access(actors.patient_actor(world, ins))
    holder.block_professional(ins, "desk1")
    agent = actors.desk_actor("desk1", "390000000000017")
    with pytest.raises(Forbidden) as refused:
        world.access(agent).issue_activation_code(ins)
    assert refused.value.reason == "DENY_BLOCKED"


def test_a_reopening_over_a_deletion_request_is_refused(world: Runtime, clock: FixedClock) -> None:
    ins = ins_for(9)
    open_record(world, ins)
    holder = world.access(actors.patient_actor(world, ins))
    due = holder.request_deletion(ins)
    # Nor the operator's command (a system job): it would cancel the request silently.
    for who in (desk(), pro(world, GP), system_actor("cli-record-reopen")):
        with pytest.raises(Forbidden) as refused:
            world.access(who).reopen_record(ins)
        assert refused.value.reason == "DENY_DELETION_PENDING"
        assert "deletion" in refused.value.message
    with pytest.raises(Forbidden) as refused:
        holder.reopen_record(ins)  # the holder withdraws first
    assert refused.value.reason == "DENY_DELETION_PENDING"
    record = holder.read_record(ins)
    assert record.deletion_requested_at is not None and record.status == "closed"
    # Nobody but the holder (or a representative) withdraws it.
    for who in (desk(), pro(world, GP)):
        with pytest.raises(Forbidden):
            world.access(who).withdraw_deletion(ins)
    assert holder.read_record(ins).deletion_requested_at is not None
    kept = holder.withdraw_deletion(ins)
    assert record.closed_at is not None
    assert kept == record.closed_at.replace(year=record.closed_at.year + 10) and kept > due
    with pytest.raises(Conflict):
        holder.withdraw_deletion(ins)
    world.access(desk()).reopen_record(ins)
    assert holder.read_record(ins).status == "active"


def test_a_representative_withdraws_the_deletion_request(world: Runtime, clock: FixedClock) -> None:
    ins = ins_for(10)
    open_record(world, ins)
    world.access(system_actor("op")).add_representative(ins, "rep-9", "PARENT", "pere")
    world.access(actors.patient_actor(world, ins)).request_deletion(ins)
    rep = Actor(ActorKind.REPRESENTATIVE, "rep-9", ins=ins)
    world.access(rep).withdraw_deletion(ins)
    with world.engine.connect() as conn:
        reasons = conn.execute(
            sa.select(audit_events.c.action, audit_events.c.actor_id).where(
                audit_events.c.action == "record.deletion_withdraw"
            )
        ).all()
    assert [tuple(r) for r in reasons] == [("record.deletion_withdraw", "rep-9")]


def test_a_half_finished_activation_gets_a_new_letter(world: Runtime, clock: FixedClock) -> None:
    """A password chosen but the second factor never confirmed is no activation: the desk may
    print a new letter (a recovery would have nowhere to go)."""
    ins = ins_for(12)
    open_record(world, ins)
    portal = Portal(world)
    first = world.access(desk()).issue_activation_code(ins)
    portal.set_password(
        portal.start_activation(ins.value, first.code, "10.0.0.1"), PASSWORD, PASSWORD
    )
    with pytest.raises(Forbidden):
        world.access(desk()).start_account_recovery(ins)
    again = world.access(desk()).issue_activation_code(ins)
    session = portal.start_activation(ins.value, again.code, "10.0.0.1")
    enrol = portal.set_password(session, NEW_PASSWORD, NEW_PASSWORD)
    secret = portal.enrolment(enrol).secret
    full, _ = portal.confirm_enrolment(enrol, pyotp.TOTP(secret).at(clock.now()))
    assert full.stage == FULL
    with pytest.raises(Forbidden):
        world.access(desk()).issue_activation_code(ins)  # activated now: recovery only
