"""An independent reference model of the DMP access rules, written from docs/access-rules.md.

It shares no code with ``dmp.access.policy`` or the matrix loader: the habilitation matrix is read
from the table embedded in the documentation, and each rule is restated here in its own words.
The property tests compare what the gate returns with what this model says each actor must see,
so removing or weakening any single rule in the gate makes them fail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "access-rules.md"

REFUSED = None  # the model's answer when the actor must be refused outright


@dataclass(frozen=True)
class ModelDoc:
    author: str  # idNatPS of the author
    author_structure: str
    type_code: str
    masked: bool  # MASQUE_PS
    hidden_from_patient: bool  # INVISIBLE_PATIENT, not yet revealed
    hidden_from_representatives: bool  # INVISIBLE_REPRESENTANTS_LEGAUX


@dataclass(frozen=True)
class ModelWorld:
    docs: dict[str, ModelDoc]
    consented: frozenset[str]  # professionals whose consent was declared
    care_team: frozenset[str]  # declared members (the initial consent is always recorded)
    blocked: frozenset[str]
    gp: str | None  # médecin traitant
    mask_all: bool
    opposes_emergency: bool
    opposes_regulation: bool


@dataclass(frozen=True)
class ModelProfessional:
    id: str
    structure: str
    profession: str
    section: str | None = None


@cache
def matrix_from_docs() -> dict[tuple[str, str | None], frozenset[str] | None]:
    """(profession, pharmacist section) -> readable type codes (None: all), from the table in
    docs/access-rules.md."""
    text = DOC.read_text(encoding="utf-8")
    table = text.split("<!-- matrix-table:start -->", 1)[1].split("<!-- matrix-table:end -->")[0]
    out: dict[tuple[str, str | None], frozenset[str] | None] = {}
    for line in table.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        profession = re.findall(r"\(([^()]+)\)\s*$", cells[0])[0]
        section = re.findall(r"section (\w+)", cells[1])
        types = (
            None if cells[2] == "all types" else frozenset(re.findall(r"\(([^()]+)\)", cells[2]))
        )
        out[(profession, section[0] if section else None)] = types
    return out


def _readable(pro: ModelProfessional, type_code: str) -> bool:
    matrix = matrix_from_docs()
    key = (pro.profession, pro.section) if (pro.profession, pro.section) in matrix else None
    if key is None:
        key = (pro.profession, None)
    if key not in matrix:
        return False  # a profession absent from the matrix reads nothing
    types = matrix[key]
    return types is None or type_code in types


def professional_sees(
    world: ModelWorld, pro: ModelProfessional, mode: str, *, forbidden: bool = False
) -> set[str] | None:
    """What a professional's search returns, or REFUSED. ``mode``: normal, bris_de_glace (with
    a justification), centre_15."""
    if forbidden:  # AC-16
        return REFUSED
    if pro.id in world.blocked:  # AC-3, every mode
        return REFUSED
    if pro.id == world.gp:  # AC-7: every document, masked ones too, in every mode
        return set(world.docs)
    refused_in_mode = {
        # AC-4: consent, or the care team (with the initial consent, recorded at opening)
        "normal": pro.id not in world.consented and pro.id not in world.care_team,
        "bris_de_glace": world.opposes_emergency,  # AC-8 (a justification is given)
        "centre_15": pro.profession != "10" or world.opposes_regulation,  # AC-9
    }
    if refused_in_mode[mode]:
        return REFUSED
    seen = set()
    for doc_id, d in world.docs.items():
        if not _readable(pro, d.type_code):  # AC-5
            continue
        if (d.masked or world.mask_all) and not (  # AC-6
            pro.id == d.author or pro.structure == d.author_structure
        ):
            continue
        seen.add(doc_id)
    return seen


def holder_sees(world: ModelWorld, *, representative: bool) -> set[str]:
    """AC-11: nothing hidden pending an announcement; AC-12: representatives also miss what is
    hidden from them."""
    return {
        doc_id
        for doc_id, d in world.docs.items()
        if not d.hidden_from_patient and not (representative and d.hidden_from_representatives)
    }


# -- every action, not only reading (docs/access-rules.md, "Order of the rules") ---------------


@dataclass(frozen=True)
class ModelRecord:
    """What the rules about actions need to know of one record."""

    world: ModelWorld
    closed: bool
    deletion_pending: bool
    account_activated: bool


@dataclass(frozen=True)
class ModelActor:
    """Who acts: ``holder``, ``representative`` (registered), ``stranger`` (another patient or
    an unregistered representative), ``professional``, ``desk`` or ``system``."""

    kind: str
    id: str = ""
    structure: str | None = None
    pro: ModelProfessional | None = None
    forbidden: bool = False


# The actions, in the words of the table under "Order of the rules".
HOLDER_ONLY = {
    "close",
    "settings",
    "block",
    "unblock",
    "request_deletion",
    "withdraw_deletion",
    "name_gp",
}
SYSTEM_ONLY = {"register_representative", "shred_keys", "declare_death", "purge"}
DESK = {"letter", "recovery", "reopen"}


def may_act(
    record: ModelRecord, who: ModelActor, action: str, mode: str, subject: str | None = None
) -> bool:
    """Whether the rules let ``who`` do ``action`` on the record (``subject``: the professional
    a consent, a care-team entry or a GP designation names). A state conflict after the rules
    (closing a closed record, a recovery already under way) is not the rules' business."""
    w = record.world
    if action == "open":
        return False  # the record exists: nobody opens it again, system jobs included
    if action == "reopen" and record.deletion_pending:  # 0: whoever asks, system jobs too
        return False
    if who.kind == "system":  # 1
        return True
    if action in SYSTEM_ONLY:  # 2
        return False
    if who.forbidden:  # 3
        return False
    if who.kind in ("professional", "desk") and who.id in w.blocked:  # 4
        return False
    if action in ("consent", "care_team", "name_gp") and subject in w.blocked:  # 5
        return False
    if who.kind in ("holder", "representative"):  # 6
        return action not in ("letter", "recovery")
    if action in DESK:  # 7
        if who.kind not in ("desk", "professional") or not who.structure:
            return False
        if action == "reopen":
            return True
        if record.closed:
            return False
        return (action == "letter") != record.account_activated
    if who.kind != "professional":  # 8
        return False
    assert who.pro is not None
    if record.closed:  # 9, AC-1
        return False
    if action == "deposit":
        return who.structure is not None
    if action == "consent":
        return subject in (None, who.id)
    if action == "history":
        return True
    if action == "care_team":
        return mode == "normal" and professional_sees(w, who.pro, mode) is not REFUSED
    if action == "read":
        return professional_sees(w, who.pro, mode) is not REFUSED
    return False
