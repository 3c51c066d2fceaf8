"""THE gate: :class:`RecordAccess`, one per request, bound to one authenticated grant.

It is the kernel (``gate.py``: facts, grant, policy, the work, the audit event on exit) plus one
module of actions per DMP notion. Every read or change of patient data is one of its methods.
"""

from __future__ import annotations

from dmp.access.apps import AppActions
from dmp.access.consents import ConsentActions
from dmp.access.documents import DocumentActions
from dmp.access.history import HistoryActions
from dmp.access.keys import KeyActions
from dmp.access.lifecycle import LifecycleActions
from dmp.access.publication import PublicationActions
from dmp.access.records import RecordActions
from dmp.access.summary import SummaryActions


class RecordAccess(
    RecordActions,
    DocumentActions,
    PublicationActions,
    ConsentActions,
    HistoryActions,
    KeyActions,
    LifecycleActions,
    SummaryActions,
    AppActions,
):
    """Per-request access to records, bound to one grant (actor, scopes, purpose of use)."""
