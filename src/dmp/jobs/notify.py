"""Delivering the outbox (``dmp worker``, ``dmp jobs run``).

A worker leases a batch of due notices (committed), then delivers them one at a time, each
outcome committed on its own: sent, skipped (nobody to tell, the person chose not to hear of
it, or its reason is gone), or failed, retried with exponential back-off and moved to the
dead-letter state after ``DMP_NOTIFY_MAX_ATTEMPTS``. A worker killed mid-batch leaves its lease
to expire; another worker (or itself, restarted) takes the rest. A message the SMTP server had
accepted just before the kill may be sent again: every message carries the notice's stable
Message-ID, by which a receiver recognises it (the crash test counts them).

Whether a notice is still due is decided through the gate, as the system actor
``system:notify`` (audited like any reader): a document no longer hidden, or deleted, is not
announced.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from dmp.access import codes
from dmp.crypto import envelope
from dmp.domain import alerts
from dmp.domain.french import PARIS
from dmp.domain.ins import PatientKey
from dmp.errors import NotFound
from dmp.identity.actor import system_actor
from dmp.jobs import channels, letters, messages
from dmp.records import directory, outbox
from dmp.records.outbox import Notice
from dmp.runtime import Runtime

log = logging.getLogger("dmp.notify")

BATCH = 20
# Which preference governs which kind (the portal's notification page); the rest are always
# sent (the law wants the holder told: an opening, a closure, a document awaiting its
# announcement).
PREFERENCE = {
    "first_access": "premier_acces",
    "emergency_access": "urgence",
    "regulation_access": "urgence",
    "emergency_expired": "urgence",
    "new_document": "nouveau_document",
    "document_revealed": "nouveau_document",
    "night_access": "nuit",
    "distant_access": "loin",
}
# What the holder may take as one daily digest (the emergency notices always go at once).
DIGESTIBLE = {"new_document", "document_revealed", "first_access", "night_access", "distant_access"}
# Notices about a document: they name no professional.
DOCUMENT_KINDS = {"new_document", "document_revealed"}
# About the holder's online account: their subject is the structure that acted (the desk).
ACCOUNT_KINDS = {"activation_letter", "account_recovery", "account_reset"}


def worker_name() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class Report:
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    dead: int = 0
    postponed: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: Report) -> None:
        self.sent += other.sent
        self.skipped += other.skipped
        self.failed += other.failed
        self.dead += other.dead
        self.postponed += other.postponed
        self.errors.extend(other.errors)


def deliver_due(rt: Runtime, worker: str, *, limit: int | None = None) -> Report:
    """Deliver due notices, batch after batch, until none is due (or ``limit`` are handled)."""
    total = Report()
    handled = 0
    while limit is None or handled < limit:
        now = rt.clock.now()
        lease = timedelta(seconds=rt.settings.notify_lease_seconds)
        with rt.engine.begin() as conn:
            batch = outbox.claim(
                conn, worker=worker, now=now, until=now + lease, limit=min(BATCH, limit or BATCH)
            )
        if not batch:
            break
        total.add(_deliver_batch(rt, worker, batch))
        handled += len(batch)
    return total


def _deliver_batch(rt: Runtime, worker: str, batch: list[Notice]) -> Report:
    report = Report()
    digests: dict[tuple[str, str], list[Notice]] = defaultdict(list)
    for notice in batch:
        try:
            outcome = _prepare(rt, notice)
        except Exception as exc:  # a bug or an outage: counted as a failed attempt
            log.warning("preparing a notice failed", exc_info=True)
            _failed(rt, worker, notice, f"prepare: {type(exc).__name__}", report)
            continue
        if isinstance(outcome, str):
            _finish(rt, worker, notice, "skipped", report, error=outcome)
        elif isinstance(outcome, datetime):
            with rt.engine.begin() as conn:
                outbox.postpone(conn, notice, worker=worker, until=outcome)
            report.postponed += 1
        elif outcome.digest:
            digests[(outcome.channel, outcome.address)].append(notice)
        else:
            _isolated(rt, worker, [notice], outcome, report)
    for (channel, address), notices in digests.items():
        _isolated(rt, worker, notices, _Delivery(channel, address, digest=True), report)
    return report


def _isolated(
    rt: Runtime, worker: str, notices: list[Notice], how: _Delivery, report: Report
) -> None:
    """One delivery; whatever it raises (a poison notice: a contact the mail library
    refuses, a code that no longer opens) is a failed attempt of those notices alone: the
    rest of the batch is delivered, and they become dead after DMP_NOTIFY_MAX_ATTEMPTS."""
    try:
        _send(rt, worker, notices, how, report)
    except Exception as exc:
        log.warning("sending a notice failed", exc_info=True)
        for notice in notices:
            _failed(rt, worker, notice, f"send: {type(exc).__name__}", report)


@dataclass(frozen=True)
class _Delivery:
    channel: str
    address: str
    digest: bool = False


def _prepare(rt: Runtime, notice: Notice) -> _Delivery | str | datetime:
    """Where and how to send it; or why not (str); or when (a digest waiting for its hour)."""
    prefs = _preferences(rt, notice)
    if prefs is None:
        return "nobody to tell: no portal account"
    reason = _still_due(rt, notice)
    if reason is not None:
        return reason
    key = PREFERENCE.get(notice.kind, "")
    choice = prefs.get(key, alerts.DEFAULTS.get(key, "immediat"))
    if notice.kind in PREFERENCE and choice == "jamais":
        return "the person chose not to be told"
    channel = prefs.get("canal", "courriel")
    address = str(prefs.get("contact", "")).strip()
    if channel not in ("courriel", "sms") or not address:
        if notice.kind == "account_recovery":
            return _Delivery("courrier", "")  # the code goes by post: never to a third party
        return "nobody to tell: no contact given"
    if notice.kind in DIGESTIBLE and choice == "quotidien":
        slot = next_digest(notice.created_at, rt.settings.digest_hour)
        if rt.clock.now() < slot:
            return slot
        return _Delivery(channel, address, digest=True)
    return _Delivery(channel, address)


def next_digest(after: datetime, hour: int) -> datetime:
    """The first daily digest time (``hour`` o'clock, Paris) after ``after``."""
    local = after.astimezone(PARIS)
    slot = datetime.combine(local.date(), time(hour), PARIS)
    if slot <= local:
        slot = datetime.combine(local.date() + timedelta(days=1), time(hour), PARIS)
    return slot


def _preferences(rt: Runtime, notice: Notice) -> dict[str, Any] | None:
    """The recipient's preferences and contact, read through the gate (system actor
    ``system:notify``): the read is in the patient's trail. A record gone (purged) has nobody
    to tell."""
    gate = rt.access(system_actor("notify"))
    try:
        return gate.notice_contact(
            PatientKey(notice.patient_id), notice.id, notice.recipient_kind, notice.recipient_id
        )
    except NotFound:
        return None


def _still_due(rt: Runtime, notice: Notice) -> str | None:
    """Checked through the gate (system actor): the reason of a document notice still holds."""
    if notice.kind not in ("new_document", "document_pending_announcement", "document_revealed"):
        return None
    if not notice.subject_id:
        return "no document named"
    gate = rt.access(system_actor("notify"))
    try:
        doc = gate.read_document(PatientKey(notice.patient_id), notice.subject_id)
    except NotFound:
        return "the document is gone"
    now = rt.clock.now()
    if doc.status not in ("current", "superseded", "archived") or not doc.latest:
        return "the document is gone"
    hidden = doc.invisible_patient and (
        doc.invisible_patient_until is None or doc.invisible_patient_until > now
    )
    if notice.kind == "document_pending_announcement" and not hidden:
        return "the document was presented already"
    if notice.kind == "document_revealed" and not doc.invisible_patient:
        return "the document was revealed earlier (told then)"
    if notice.kind == "new_document" and hidden:
        return "the document is hidden from the patient"
    return None


def _professional(rt: Runtime, id_nat_ps: str | None) -> messages.Professional | None:
    if not id_nat_ps:
        return None
    with rt.engine.connect() as conn:
        found = directory.get_professional(conn, id_nat_ps)
        if found is None:
            return None
        names = directory.structure_names(conn, set(found.structure_ids[:1]))
    structure = names.get(found.structure_ids[0]) if found.structure_ids else None
    return messages.Professional(
        f"{found.given_name.title()} {found.family_name.title()}", found.profession_code, structure
    )


def message_id(notice: Notice) -> str:
    return f"<{notice.id}.{notice.patient_id}@dmp>"


def _structure(rt: Runtime, structure_id: str | None) -> str | None:
    if not structure_id:
        return None
    with rt.engine.connect() as conn:
        return directory.structure_names(conn, {structure_id}).get(structure_id)


def _code(rt: Runtime, notice: Notice) -> str | None:
    """The one-time code a notice carries (opened at delivery only)."""
    if notice.secret_sealed is None:
        return None
    context = codes.notice_context(notice.patient_id, notice.id)
    return envelope.open_sealed(rt.notice_key, notice.secret_sealed, context).decode()


def _send(rt: Runtime, worker: str, notices: list[Notice], how: _Delivery, report: Report) -> None:
    first = notices[0]
    account = first.kind in ACCOUNT_KINDS
    subject_ps = (
        first.subject_id
        if not how.digest and first.kind not in DOCUMENT_KINDS and not account
        else None
    )
    kinds = Counter(n.kind for n in notices)
    # A digest of one kind of document notice keeps its own wording; any other is the day's
    # summary, counted by kind.
    kind = first.kind if not how.digest or set(kinds) <= DOCUMENT_KINDS else "digest"
    code = _code(rt, first)
    if first.kind == "account_recovery" and code is None:
        _finish(rt, worker, first, "skipped", report, error="the code is gone (sent or dead)")
        return
    text = messages.compose(
        kind,
        recipient=first.recipient_kind,
        at=first.created_at,
        portal_url=rt.settings.portal_url,
        professional=_professional(rt, subject_ps),
        count=len(notices),
        structure=_structure(rt, first.subject_id) if account else None,
        code=code,
        code_hours=rt.settings.recovery_code_hours,
        counts=dict(kinds),
    )
    mid = message_id(first)
    try:
        if how.channel == "courriel":
            channels.send_email(rt.settings, how.address, text.subject, text.body, mid)
        elif how.channel == "sms":
            channels.send_sms(rt.settings, how.address, text.sms, mid)
        else:
            letters.write(rt, first, text)
    except channels.NoChannel as exc:
        if first.kind != "account_recovery":
            for notice in notices:
                _finish(rt, worker, notice, "skipped", report, error=str(exc))
            return
        # A recovery code is never dropped for want of a mail or SMS service: it goes by
        # post, as to a holder without a contact (and never to anyone else).
        letters.write(rt, first, text)
        how = _Delivery("courrier", "")
    except channels.DeliveryError as exc:
        for notice in notices:
            _failed(rt, worker, notice, str(exc), report)
        return

    for notice in notices:
        _finish(rt, worker, notice, "sent", report, channel=how.channel, message=mid)


def _finish(
    rt: Runtime,
    worker: str,
    notice: Notice,
    status: str,
    report: Report,
    *,
    channel: str | None = None,
    message: str | None = None,
    error: str | None = None,
) -> None:
    with rt.engine.begin() as conn:
        outbox.finish(
            conn,
            notice,
            worker=worker,
            status=status,
            at=rt.clock.now(),
            channel=channel,
            message_id=message,
            error=error,
        )
    if status == "sent":
        report.sent += 1
    else:
        report.skipped += 1


def _failed(rt: Runtime, worker: str, notice: Notice, error: str, report: Report) -> None:
    attempts = notice.attempts + 1
    dead = attempts >= rt.settings.notify_max_attempts
    delay = timedelta(seconds=rt.settings.notify_retry_seconds * 2 ** (attempts - 1))
    with rt.engine.begin() as conn:
        outbox.failed(
            conn,
            notice,
            worker=worker,
            error=error,
            retry_at=rt.clock.now() + delay,
            dead=dead,
        )
    report.failed += 1
    report.dead += int(dead)
    report.errors.append(error)
