"""Why someone could see the record, in words: one trace of the history explained the same way on
the portal, in the FHIR AuditEvent and in the export."""

from __future__ import annotations

from dataclasses import dataclass

from dmp.access.views import TraceView
from dmp.domain.codes import TYPE_LABELS
from dmp.domain.explanations import rule_for
from dmp.domain.french import date_fr, datetime_fr

_DECLARED_BY = {
    "patient": "par vous",
    "representative": "par votre représentant légal",
    "professional": "par le professionnel, avec votre accord",
    "desk_agent": "au guichet",
}


@dataclass(frozen=True, slots=True)
class Explanation:
    rule: str  # AC-n in docs/access-rules.md
    sentence: str  # the rule, to the holder
    source: str  # its legal source
    details: tuple[str, ...]  # what allowed it this time: the consent and its date...
    documents: tuple[str, ...]  # the documents read (or refused), as the reader may see them

    def text(self) -> str:
        """Everything in one paragraph (the AuditEvent's description, the export)."""
        parts = [self.sentence, *self.details]
        if self.documents:
            parts.append("Documents : " + " ; ".join(self.documents) + ".")
        parts.append(f"Source : {self.source}.")
        return " ".join(parts)


def document_line(type_code: str, title: str, created_on: str) -> str:
    label = TYPE_LABELS.get(type_code, "document")
    if title and title != label:
        return f"{label} « {title} » du {created_on}"
    return f"{label} du {created_on}"


def explain(t: TraceView) -> Explanation:
    rule = rule_for(t.reason)
    b = t.basis
    details: list[str] = []
    if b.consent_at is not None:
        by = _DECLARED_BY.get(b.consent_by or "", "")
        details.append(f"Consentement enregistré le {datetime_fr(b.consent_at)} {by}".strip() + ".")
    if b.care_team_at is not None:
        by = _DECLARED_BY.get(b.consent_by or "", "")
        when = datetime_fr(b.care_team_at)
        details.append(f"Ajouté à votre équipe de soins le {when} {by}".strip() + ".")
    if b.initial_consent_at is not None:
        details.append(f"Votre consentement initial date du {date_fr(b.initial_consent_at)}.")
    if b.emergency_opened_at is not None:
        details.append(
            f"Accès en urgence ouvert le {datetime_fr(b.emergency_opened_at)}, "
            f"valable jusqu'au {datetime_fr(b.emergency_until)}."
        )
        if b.justification:
            details.append(f"Justification donnée par le professionnel : « {b.justification} ».")
    if t.purpose == "centre_15" and t.outcome == "success":
        details.append("Accès par le centre de régulation (SAMU-centre 15).")
    verb = "refusé" if t.outcome != "success" else ""
    docs = tuple(
        document_line(d.type_code, d.title, date_fr(d.created)) + (f" ({verb})" if verb else "")
        for d in t.briefs
    )
    return Explanation(rule.rule, rule.sentence, rule.source, tuple(details), docs)
