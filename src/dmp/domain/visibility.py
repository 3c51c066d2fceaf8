"""The row filter the access policy hands to the storage layer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class DocumentVisibility:
    """Which rows of a record an actor may see, as decided by the access policy.

    The records layer turns it into SQL applied before paging and counting, and single reads use
    the very same clause, so a search and a read can never disagree.
    """

    statuses: tuple[str, ...] | None = None  # None: every status
    type_codes: frozenset[str] | None = None  # None: every type (habilitation matrix)
    # Masked documents (MASQUE_PS): "all" visible, "none" visible, or "authors": only those by
    # ``masked_authors`` / ``masked_structures`` (AC-6).
    masked: str = "all"
    masked_authors: tuple[str, ...] = ()
    masked_structures: tuple[str, ...] = ()
    # Hide INVISIBLE_PATIENT documents whose reveal time is after this instant (AC-11).
    hide_invisible_patient_at: datetime | None = None
    hide_invisible_representatives: bool = False
    # The holder masked everything at once: every document counts as masked (AC-6).
    mask_everything: bool = False
    # Restrict to documents authored by these professionals or structures (modifications).
    authors: tuple[str, ...] | None = None
    author_structures: tuple[str, ...] = ()
