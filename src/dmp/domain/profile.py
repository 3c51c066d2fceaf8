"""The health profile the holder fills in on the portal: each part is a document the holder
authors (plain text, its title naming the part), and three parts feed the summary of care."""

from __future__ import annotations

from dmp.domain.summary import Entry

# (key, label, XDS type code)
PROFILE = (
    ("allergies", "Allergies et intolérances", "DOCPAT08"),
    ("traitements", "Traitements en cours", "DOCPAT08"),
    ("vaccinations", "Vaccinations", "DOCPAT08"),
    ("contacts", "Contacts en cas d'urgence", "DOCPAT08"),
    ("confiance", "Personne de confiance", "EXPPAT_1"),
    ("directives", "Directives anticipées", "EXPPAT_3"),
    ("dons", "Don d'organes", "EXPPAT_1"),
)
PROFILE_PREFIX = "Profil médical — "
PROFILE_TYPES = tuple(sorted({t for _, _, t in PROFILE}))
# The parts the summary of care reads, by the kind of line each gives.
_IN_SUMMARY = {
    "Allergies et intolérances": "allergy",
    "Traitements en cours": "treatment",
    "Vaccinations": "vaccination",
}
DECLARED = "déclaré par le patient"


def document(label: str, who: str, on: str, text: str) -> str:
    """A profile part as stored: its title line, who typed it and when, then the text."""
    return f"{PROFILE_PREFIX}{label}\nSaisi par {who} le {on}.\n\n{text}\n"


def profile_text(content: bytes) -> str:
    """What the holder typed in a profile part."""
    _, _, body = content.decode("utf-8", errors="replace").partition("\n\n")
    return body


def summary_entries(title: str, content: bytes, on: str) -> list[Entry]:
    """The lines a profile part gives the summary of care: one per non-empty line the holder
    typed (an allergy, a treatment, a vaccination), marked as declared by the patient."""
    kind = (
        _IN_SUMMARY.get(title.removeprefix(PROFILE_PREFIX))
        if title.startswith(PROFILE_PREFIX)
        else None
    )
    if kind is None:
        return []
    lines = (" ".join(line.split()) for line in profile_text(content).splitlines())
    return [Entry(kind, line[:200], DECLARED, on, None) for line in lines if line]
