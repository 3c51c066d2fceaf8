"""The operator's snooping report: professionals whose reading pattern looks like curiosity
rather than care. Read from the audit trail through the gate's system action (the report names
professionals and counts records of every patient: it is itself traced).

Three signals, over ``DMP_SNOOP_DAYS`` days, each a count of distinct records:
- **self-declared consent**: records whose consent the professional declared themselves (the
  consent box ticked by the reader), at least ``DMP_SNOOP_SELF_DECLARED``;
- **refusals**: records where an access of theirs was refused (no consent, blocked, a document
  that is not there), at least ``DMP_SNOOP_REFUSED``;
- **emergency above peers**: emergency windows opened on at least ``DMP_SNOOP_EMERGENCY_MIN``
  records and at least ``DMP_SNOOP_EMERGENCY_FACTOR`` times the mean of the professionals of the
  same profession who read records in the period.
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from dmp.domain.codes import AuditAction
from dmp.domain.french import PROFESSIONS, date_fr
from dmp.identity.actor import system_actor
from dmp.records import audit_log, directory

if TYPE_CHECKING:
    from dmp.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Pattern:
    id_nat_ps: str
    name: str
    profession: str | None
    read: int
    self_declared: int
    refused: int
    emergency: int
    peers_emergency_mean: float
    reasons: tuple[str, ...]  # why the professional is listed (empty: not listed)


def report(rt: Runtime) -> tuple[list[Pattern], int]:
    """The professionals the thresholds single out (most signals first), and how many
    professionals acted in the period."""
    s = rt.settings
    since = rt.clock.now() - timedelta(days=s.snoop_days)
    gate = rt.access(system_actor("report"))
    with gate.act_system(AuditAction.SNOOPING_REPORT, f"{s.snoop_days} days") as op:
        rows = audit_log.professional_patterns(op.conn, since)
        acting = {r[0] for r in rows}
        found = directory.get_professionals(op.conn, acting)
    people = {ps: found.get(ps) for ps in acting}
    profession = {ps: (p.profession_code if p else None) for ps, p in people.items()}
    totals: dict[str | None, list[int]] = defaultdict(list)
    for ps, read, _, _, emergency in rows:
        if read:
            totals[profession[ps]].append(emergency)
    means = {k: sum(v) / len(v) for k, v in totals.items()}
    out = []
    for ps, read, self_declared, refused, emergency in rows:
        mean = means.get(profession[ps], 0.0)
        reasons = []
        if self_declared >= s.snoop_self_declared:
            reasons.append(f"consentement déclaré par lui-même sur {self_declared} dossiers")
        if refused >= s.snoop_refused:
            reasons.append(f"accès refusé sur {refused} dossiers")
        if emergency >= s.snoop_emergency_min and emergency >= s.snoop_emergency_factor * mean:
            reasons.append(
                f"accès en urgence sur {emergency} dossiers, {emergency / mean:.1f} fois la "
                "moyenne de sa profession".replace(".", ",")
                if mean
                else f"accès en urgence sur {emergency} dossiers"
            )
        if reasons:
            p = people[ps]
            name = f"{p.given_name} {p.family_name}" if p else ps
            out.append(
                Pattern(
                    ps,
                    name,
                    profession[ps],
                    read,
                    self_declared,
                    refused,
                    emergency,
                    round(mean, 2),
                    tuple(reasons),
                )
            )
    out.sort(key=lambda p: (-len(p.reasons), -p.self_declared - p.refused - p.emergency))
    return out, len(rows)


def as_html(patterns: list[Pattern], acted: int, rt: Runtime) -> str:
    """The report as a self-contained French page (the operator opens or shares the file)."""
    s = rt.settings
    rows = "".join(
        "<tr>"
        f"<td>{html.escape(p.id_nat_ps)}</td><td>{html.escape(p.name)}</td>"
        f"<td>{html.escape(PROFESSIONS.get(p.profession or '', p.profession or '—'))}</td>"
        f"<td>{p.read}</td><td>{p.self_declared}</td><td>{p.refused}</td><td>{p.emergency}</td>"
        f"<td>{'<br>'.join(html.escape(r) for r in p.reasons)}</td>"
        "</tr>"
        for p in patterns
    )
    empty = "<p>Aucun professionnel ne dépasse les seuils.</p>" if not patterns else ""
    return f"""<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"><title>Accès à surveiller — DMP</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ccc;padding:.3rem .5rem;
text-align:left;vertical-align:top}}</style></head><body>
<h1>Accès à surveiller</h1>
<p>Du {date_fr(rt.clock.now() - timedelta(days=s.snoop_days))} au {date_fr(rt.clock.now())} :
{acted} professionnel{"s" if acted != 1 else ""} ont agi sur des dossiers ;
{len(patterns)} dépasse{"nt" if len(patterns) != 1 else ""} un seuil.
Seuils : consentement auto-déclaré sur {s.snoop_self_declared} dossiers, refus sur
{s.snoop_refused} dossiers, urgences sur {s.snoop_emergency_min} dossiers et
{s.snoop_emergency_factor:g} fois la moyenne de la profession.</p>
{empty}<table><thead><tr><th>idNatPS</th><th>Nom</th><th>Profession</th><th>Dossiers lus</th>
<th>Consentement auto-déclaré</th><th>Refus</th><th>Urgences</th><th>Pourquoi</th></tr></thead>
<tbody>{rows}</tbody></table>
<p>Un signal n'est pas une faute : vérifiez auprès de la structure avant toute suite.</p>
</body></html>
"""
