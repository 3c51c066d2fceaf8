"""Crypto-shredding: destroying a patient's data keys (system jobs only)."""

from __future__ import annotations

from dmp.access.kernel import PATIENT_UPDATE, Kernel
from dmp.access.policy import Action
from dmp.domain.codes import AuditAction
from dmp.domain.ins import PatientRef
from dmp.records import keys as key_store


class KeyActions(Kernel):
    def destroy_data_keys(self, ins: PatientRef) -> int:
        """Crypto-shredding: destroy the patient's data keys, so their content is unreadable
        everywhere, backups included. Only a system job may do it (purge ten years after
        closure, or the holder's deletion request)."""
        with self.act(ins, Action.DESTROY_KEYS, AuditAction.KEY_SHRED, need=PATIENT_UPDATE) as op:
            return key_store.shred(op.conn, op.scope, self._rt.clock.now())
