"""Notifications: written with their cause, delivered by the worker through a real SMTP server
on loopback (aiosmtpd) or an HTTP SMS gateway, with an injected clock for every timed rule.

What a notice may say is checked against issue 11's rule, not against the templates: never
clinical content, never a document's title, never the patient's identity; an emergency notice
names the professional, the structure, the time and that a justification was given.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest

from dmp.auth import actors
from dmp.clock import FixedClock
from dmp.config import Settings
from dmp.domain.codes import PurposeOfUse
from dmp.domain.ins import Ins
from dmp.errors import InvalidInput
from dmp.identity.actor import system_actor
from dmp.jobs import scheduler
from dmp.jobs.notify import next_digest
from dmp.runtime import Runtime
from tests.factories import (
    CARDIOLOGIST,
    GP,
    NURSE,
    T0,
    ins_for,
    new_document,
    open_record,
    pro,
)
from tests.mail import SmsGateway, SmtpServer, certificate
from tests.notify_helpers import (
    bodies,
    deliver,
    notify_runtime,
    with_account,
)

SECRET_TITLE = "Resultat biopsie carcinome"
JUSTIFICATION = "Patiente inconsciente aux urgences"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def rt(settings: Settings, clock: FixedClock, smtp: SmtpServer) -> Iterator[Runtime]:
    runtime = notify_runtime(
        settings, clock, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_security="plain"
    )
    yield runtime
    runtime.close()


def _assert_no_clinical_content(text: str, ins: Ins) -> None:
    assert SECRET_TITLE not in text and "biopsie" not in text.lower()
    assert JUSTIFICATION not in text
    assert ins.value not in text and "EXEMPLE" not in text and "CAMILLE" not in text


def test_an_emergency_access_is_told_with_who_where_when_and_nothing_clinical(
    rt: Runtime, smtp: SmtpServer, clock: FixedClock
) -> None:
    ins = ins_for(51)
    open_record(rt, ins)
    with_account(rt, ins)
    rt.access(pro(rt, GP)).deposit_document(ins, new_document(T0, title=SECRET_TITLE), b"x")
    deliver(rt)
    smtp.inbox.messages.clear()
    rt.access(
        pro(rt, CARDIOLOGIST), PurposeOfUse.EMERGENCY, justification=JUSTIFICATION, patient=ins
    ).search_documents(ins)
    report = deliver(rt)
    texts = bodies(smtp)
    emergency = [t for t in texts if "urgence" in t]
    assert len(emergency) == 1, texts
    text = emergency[0]
    assert "Pro Test" in text and "médecin" in text and "STRUCTURE" in text  # who, where
    assert "2 mars 2026 à 10 h 30" in text  # when (T0 is 9:30 UTC: 10:30 in Paris)
    assert "justification a été enregistrée" in text
    for t in texts:
        _assert_no_clinical_content(t, ins)
    assert report.failed == 0
    # Its first access too, once; a second read tells nothing new.
    assert sum("première fois" in t for t in texts) == 1, texts
    smtp.inbox.messages.clear()
    rt.access(
        pro(rt, CARDIOLOGIST), PurposeOfUse.EMERGENCY, justification=JUSTIFICATION, patient=ins
    ).search_documents(ins)
    deliver(rt)
    assert smtp.inbox.messages == []
    # The window's end is told when it comes (DMP_EMERGENCY_DAYS).
    clock.advance(timedelta(days=rt.settings.emergency_access_days))
    deliver(rt)
    assert [m["Subject"] for m in smtp.inbox.messages] == [
        "Fin d'un accès en urgence à votre dossier"
    ]


def test_new_documents_follow_the_holders_choice(
    rt: Runtime, smtp: SmtpServer, clock: FixedClock
) -> None:
    now_ins, daily_ins, off_ins = ins_for(52), ins_for(53), ins_for(54)
    for ins, choice in ((now_ins, "immediat"), (daily_ins, "quotidien"), (off_ins, "jamais")):
        open_record(rt, ins)
        with_account(rt, ins, nouveau_document=choice)
    deliver(rt)  # the openings
    smtp.inbox.messages.clear()
    gp = rt.access(pro(rt, GP))
    for ins in (now_ins, daily_ins, off_ins):
        gp.deposit_document(ins, new_document(T0, title=SECRET_TITLE), b"a")
    gp.deposit_document(daily_ins, new_document(T0, title=SECRET_TITLE), b"b")
    report = deliver(rt)
    assert [m["To"] for m in smtp.inbox.messages] == [f"{now_ins.value}@patient.invalid"]
    assert report.postponed == 2 and report.skipped == 1  # the digest waits; "off" is off
    # The digest goes at 8:00 (Paris) the next morning, once, for both documents.
    slot = next_digest(T0, 8)
    assert slot.isoformat() == "2026-03-03T08:00:00+01:00"
    clock.set(slot - timedelta(minutes=1))
    deliver(rt)
    assert len(smtp.inbox.messages) == 1
    clock.set(slot)
    deliver(rt)
    digest = smtp.inbox.messages[1]
    assert digest["To"] == f"{daily_ins.value}@patient.invalid"
    assert digest["Subject"] == "2 nouveaux documents dans votre dossier"
    _assert_no_clinical_content(digest.get_content(), daily_ins)


def test_a_document_hidden_from_the_patient_is_told_only_as_the_rules_say(
    rt: Runtime, smtp: SmtpServer, clock: FixedClock
) -> None:
    """AC-11 / R1111-53: nothing while hidden; after two weeks still undisclosed, an invitation
    to see a professional; after a month, the reveal. Revealed early: told then, not later."""
    kept, shown = ins_for(55), ins_for(56)
    for ins in (kept, shown):
        open_record(rt, ins)
        with_account(rt, ins)
    deliver(rt)
    smtp.inbox.messages.clear()
    cardio = rt.access(pro(rt, CARDIOLOGIST))
    hidden = new_document(T0, title=SECRET_TITLE, invisible_patient=True)
    cardio.deposit_document(kept, hidden, b"k")
    early = cardio.deposit_document(shown, hidden, b"s")
    deliver(rt)
    assert smtp.inbox.messages == []  # hidden: no notice
    clock.advance(timedelta(days=3))
    cardio.update_document(shown, early.logical_id, invisible_patient=False)
    deliver(rt)
    assert [(m["To"], m["Subject"]) for m in smtp.inbox.messages] == [
        (f"{shown.value}@patient.invalid", "Nouveau document dans votre dossier")
    ]
    smtp.inbox.messages.clear()
    clock.set(T0 + timedelta(days=14))
    deliver(rt)
    assert [(m["To"], m["Subject"]) for m in smtp.inbox.messages] == [
        (f"{kept.value}@patient.invalid", "Votre dossier a été mis à jour")
    ]
    smtp.inbox.messages.clear()
    clock.set(T0 + timedelta(days=30))
    deliver(rt)
    assert [(m["To"], m["Subject"]) for m in smtp.inbox.messages] == [
        (f"{kept.value}@patient.invalid", "Un document de votre dossier est désormais visible")
    ]
    for text in bodies(smtp):
        _assert_no_clinical_content(text, kept)


def test_failures_back_off_then_dead_letter_then_retry(
    settings: Settings, clock: FixedClock
) -> None:
    from tests.mail import free_port

    closed = free_port()  # nobody listens there
    rt = notify_runtime(
        settings,
        clock,
        smtp_host="127.0.0.1",
        smtp_port=closed,
        smtp_security="plain",
        notify_max_attempts=3,
        notify_retry_seconds=60,
    )
    try:
        ins = ins_for(57)
        open_record(rt, ins)
        with_account(rt, ins)
        first = deliver(rt)
        assert first.failed == 1 and "ConnectionRefused" in first.errors[0]
        notice = rt.access(system_actor("t")).notifications(ins)[0]
        assert notice["due_at"] == T0 + timedelta(seconds=60)  # 60 s, then 120 s
        assert deliver(rt).failed == 0  # not due yet
        clock.advance(timedelta(seconds=60))
        deliver(rt)
        clock.advance(timedelta(seconds=119))
        assert deliver(rt).failed == 0
        clock.advance(timedelta(seconds=1))
        third = deliver(rt)
        assert third.dead == 1
        notice = rt.access(system_actor("t")).notifications(ins)[0]
        assert notice["status"] == "dead" and notice["attempts"] == 3
        clock.advance(timedelta(days=1))
        assert deliver(rt).failed == 0  # a dead letter is not retried by itself
        with rt.engine.begin() as conn:
            from dmp.records import outbox

            assert outbox.retry(conn, str(notice["id"]), clock.now())
        with SmtpServer() as smtp:
            object.__setattr__(
                rt, "settings", rt.settings.model_copy(update={"smtp_port": smtp.port})
            )
            assert deliver(rt).sent == 1
            assert len(smtp.inbox.messages) == 1
    finally:
        rt.close()


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_starttls_and_implicit_tls_with_a_verified_certificate(
    settings: Settings, clock: FixedClock, tmp_path: Path, security: str
) -> None:
    certs = certificate(tmp_path)
    with SmtpServer(security, certs) as smtp:
        rt = notify_runtime(
            settings,
            clock,
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            smtp_security=security,
            smtp_ca_file=certs[0],
        )
        try:
            ins = ins_for(58)
            open_record(rt, ins)
            with_account(rt, ins)
            assert deliver(rt).sent == 1
            assert smtp.inbox.messages[0]["Subject"] == "Votre dossier médical partagé est ouvert"
            # Without the right CA, the server's certificate is not trusted: nothing is sent.
            other = tmp_path / "other"
            other.mkdir()
            rt.settings = rt.settings.model_copy(update={"smtp_ca_file": certificate(other)[0]})
            ins = ins_for(59)
            open_record(rt, ins)
            with_account(rt, ins)
            report = deliver(rt)
            assert report.sent == 0 and report.failed >= 1
            assert any("CERTIFICATE_VERIFY_FAILED" in e or "SSL" in e for e in report.errors)
            assert len(smtp.inbox.messages) == 1
        finally:
            rt.close()


def test_sms_through_the_gateway(settings: Settings, clock: FixedClock) -> None:
    with SmsGateway() as gateway:
        rt = notify_runtime(settings, clock, sms_url=gateway.url, sms_token=gateway.token)
        try:
            ins = ins_for(60)
            open_record(rt, ins)
            with_account(rt, ins, canal="sms", contact="+33600000000")
            rt.access(pro(rt, GP)).deposit_document(ins, new_document(T0, title=SECRET_TITLE), b"x")
            assert deliver(rt).sent == 2
            assert [r["to"] for r in gateway.received] == ["+33600000000"] * 2
            for r in gateway.received:
                assert r["text"].startswith("DMP : ") and len(r["text"]) <= 320
                _assert_no_clinical_content(r["text"], ins)
            gateway.fail = True
            rt.access(pro(rt, NURSE)).deposit_document(ins, new_document(T0, title="x"), b"y")
            report = deliver(rt)
            assert report.failed == 1 and "HTTP 503" in report.errors[0]
        finally:
            rt.close()


def test_nobody_to_tell_is_skipped_and_the_jobs_report_says_so(rt: Runtime) -> None:
    ins = ins_for(61)
    open_record(rt, ins)  # no portal account yet: the letter told them
    report = scheduler.run_once(rt, "w1")
    assert "outbox" in report.ran and report.notices.skipped == 1
    notice = rt.access(system_actor("t")).notifications(ins)[0]
    assert notice["status"] == "skipped" and "no portal account" in str(notice["last_error"])


def test_a_poison_contact_fails_alone_and_the_rest_is_delivered(
    rt: Runtime, smtp: SmtpServer, clock: FixedClock
) -> None:
    """A contact holding CR/LF (stored before contacts were checked) made the mail library
    raise: the whole batch stayed undelivered every round and the notice never died. Now it
    fails alone, is retried, and becomes dead; the other holders hear."""
    bad, good = ins_for(70), ins_for(71)
    for ins in (bad, good):
        open_record(rt, ins)
    with_account(rt, bad, contact="victime@patient.invalid\r\nBcc: espion@exemple.invalid")
    with_account(rt, good)
    smtp.inbox.messages.clear()
    report = deliver(rt)
    assert report.sent == 1 and report.failed == 1
    assert [m["To"] for m in smtp.inbox.messages] == [f"{good.value}@patient.invalid"]
    for _ in range(rt.settings.notify_max_attempts):
        clock.advance(timedelta(days=1))
        deliver(rt)
    [notice] = rt.access(system_actor("t")).notifications(bad)
    assert notice["status"] == "dead"
    assert all("espion" not in str(m) for m in smtp.inbox.messages)


@pytest.mark.parametrize(
    ("channel", "contact"),
    [
        ("courriel", "victime@patient.invalid\r\nBcc: espion@exemple.invalid"),
        ("courriel", "pas une adresse"),
        ("sms", "06 12\n34 56 78"),
        ("sms", "douze"),
    ],
)
def test_contacts_that_are_no_address_are_refused(
    rt: Runtime, clock: FixedClock, channel: str, contact: str
) -> None:
    from dmp.auth.portal import Portal
    from tests.portal_helpers import PASSWORD

    ins = ins_for(72)
    open_record(rt, ins)
    portal = Portal(rt)
    letter = rt.access(actors.desk_actor("d", "390000000000017")).issue_activation_code(ins)
    enrol = portal.set_password(
        portal.start_activation(letter.login, letter.code, "192.0.2.1"), PASSWORD, PASSWORD
    )
    secret = portal.enrolment(enrol).secret
    full, _ = portal.confirm_enrolment(enrol, pyotp.TOTP(secret).at(clock.now()))
    with pytest.raises(InvalidInput):
        portal.set_preferences(full, {"canal": channel, "contact": contact})
    portal.set_preferences(full, {"canal": "sms", "contact": "06 12 34 56 78"})
    assert portal.preferences(full)["contact"] == "+33612345678"
