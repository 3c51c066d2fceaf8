"""What the notification tests share: a runtime that delivers notices (each test module gives it
its SMTP server or gateway), a holder's activated portal account with notification preferences
(written directly: the portal's own tests cover activation), the worker's round, and the mail
received."""

from __future__ import annotations

import json
import uuid
from typing import Any

from dmp.clock import FixedClock
from dmp.config import Settings
from dmp.domain.ins import Ins
from dmp.jobs import notify
from dmp.records import patients, portal
from dmp.runtime import Runtime
from tests.factories import load_directory
from tests.mail import SmtpServer


def notify_runtime(settings: Settings, clock: FixedClock, **changes: Any) -> Runtime:
    rt = Runtime.start(settings.model_copy(update=changes), clock=clock)
    load_directory(rt)
    return rt


def with_account(rt: Runtime, ins: Ins, **prefs: str) -> None:
    """The holder's activated portal account with these notification preferences."""
    prefs = {"canal": "courriel", "contact": f"{ins.value}@patient.invalid", **prefs}
    with rt.engine.begin() as conn:
        patient_id = patients.find_patient_id(conn, ins.oid, ins.value)
        portal.insert_account(
            conn,
            {
                "id": uuid.uuid4().hex,
                "login": ins.value,
                "kind": "patient",
                "patient_id": patient_id,
                "ins_oid": ins.oid,
                "ins_value": ins.value,
                "created_at": rt.clock.now(),
                "activated_at": rt.clock.now(),
                "preferences": json.dumps(prefs),
            },
        )


def deliver(rt: Runtime) -> notify.Report:
    return notify.deliver_due(rt, "test-worker")


def bodies(smtp: SmtpServer) -> list[str]:
    return [f"{m['Subject']}\n{m.get_content()}" for m in smtp.inbox.messages]
