"""Which patient key an INS names, remembered by each process (a bounded LRU).

Every statement on a patient's request path filters on the patient key, so that patient tables
can be distributed by patient (docs/performance.md). A request naming the patient by INS needs
the key first: one lookup in the INS index. The answer is remembered, and checked on every use
(the facts query by key returns the record's INS, and the kernel compares it): an INS that
changed, or a record that disappeared, is looked up again, so a stale entry costs one extra
statement, never a wrong record.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class PatientIndex:
    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._keys: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ins: tuple[str, str]) -> str | None:
        with self._lock:
            key = self._keys.get(ins)
            if key is not None:
                self._keys.move_to_end(ins)
            return key

    def put(self, ins: tuple[str, str], patient_key: str) -> None:
        with self._lock:
            self._keys[ins] = patient_key
            self._keys.move_to_end(ins)
            while len(self._keys) > self._capacity:
                self._keys.popitem(last=False)

    def forget(self, ins: tuple[str, str]) -> None:
        with self._lock:
            self._keys.pop(ins, None)
