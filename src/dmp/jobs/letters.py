"""Postal letters for the mail room: a holder with neither e-mail nor phone gets their recovery
code by post. The worker writes one letter per notice (UTF-8 text, mode 0600, named by the
notice) into ``DMP_LETTERS_DIR`` (default ``courrier`` in the data directory); the insurer's
mail room prints and sends it to the address it holds for the INS, then deletes the file.
The holder's name is read through the gate, as the system actor ``system:notify``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from dmp.domain.ins import PatientKey, spaced_ins
from dmp.identity.actor import system_actor
from dmp.jobs.channels import DeliveryError

if TYPE_CHECKING:
    from dmp.jobs.messages import Message
    from dmp.records.outbox import Notice
    from dmp.runtime import Runtime


def write(rt: Runtime, notice: Notice, text: Message) -> None:
    record = rt.access(system_actor("notify")).read_record(PatientKey(notice.patient_id))
    d = record.demographics
    letter = (
        f"Destinataire : {d.given_names.title()} {(d.used_name or d.birth_family_name).upper()}\n"
        f"INS : {spaced_ins(record.ins.value)}\n"
        f"Commune de résidence (code INSEE) : {d.residence_commune}\n"
        f"Référence : {notice.id}\n\n"
        f"Objet : {text.subject}\n\n{text.body}"
    )
    folder = rt.settings.effective_letters_dir
    path = folder / f"{notice.id}.txt"
    temporary = folder / f".{notice.id}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(letter)
        os.replace(temporary, path)
    except OSError as exc:
        raise DeliveryError(f"the letter could not be written: {exc.strerror}") from None
