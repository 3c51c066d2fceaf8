"""The summary of care, read from the structured entries of CI-SIS CDA documents.

Which entries count (IHE PCC and CI-SIS templates, as the VSM medical summary, the IPS-FR
patient summary, the vaccination note and the lab report carry them; ``docs/summary.md``):

- an **allergy**: an Allergies and Intolerances Entry (``1.3.6.1.4.1.19376.1.5.3.1.4.6``), named
  by its agent (the participant's product or substance), else by its value;
- a **problem**: a Problem Entry (``…4.5``) that is no allergy, in a problem list section
  (LOINC 11450-4, "Pathologie en cours" / "Problem list"), not negated;
- a **current treatment**: a Medications Entry (``…4.7``) that is no immunization, recorded as
  given (``moodCode`` EVN), whose period has no end or ends on or after today; one known only by
  its dispensation (a reimbursement history's supply) is current for 183 days after it;
- a **vaccination**: an Immunizations Entry (``…4.12``), not negated;
- a **result**: a laboratory observation (``1.3.6.1.4.1.19376.1.3.1.6``) with its value.

Pure: no I/O; the gate hands it the contents of the documents the reader may see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from lxml import etree

from dmp.domain.cda import NS, looks_like_cda, parse_root

ALLERGY = "1.3.6.1.4.1.19376.1.5.3.1.4.6"
PROBLEM = "1.3.6.1.4.1.19376.1.5.3.1.4.5"
MEDICATION = "1.3.6.1.4.1.19376.1.5.3.1.4.7"
IMMUNIZATION = "1.3.6.1.4.1.19376.1.5.3.1.4.12"
LAB_RESULT = "1.3.6.1.4.1.19376.1.3.1.6"
PROBLEM_LIST = "11450-4"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"

KINDS = ("allergy", "treatment", "vaccination", "problem", "result")


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str  # one of KINDS
    label: str  # what it is: the agent, the product, the vaccine, the diagnosis, the test
    detail: str  # how: reaction type, dose and route, vaccine class and lot, the value
    on: str  # when, as precise as the document says: 2019, 2019-08 or 2019-08-11 ("" unknown)
    code: tuple[str, str] | None  # (code system OID, code) when coded


def _h(tag: str) -> str:
    return f"{{urn:hl7-org:v3}}{tag}"


def _templates(el: etree._Element) -> set[str]:
    return {str(t.get("root", "")) for t in el.findall("hl7:templateId", NS)}


def _text(el: etree._Element | None) -> str:
    if el is None:
        return ""
    return " ".join("".join(el.itertext()).split())


def _coded(el: etree._Element | None) -> tuple[str, tuple[str, str] | None]:
    """A coded element's display name (or original text) and its (system, code)."""
    if el is None:
        return "", None
    name = " ".join(str(el.get("displayName", "")).split())
    if not name:
        original = el.find("hl7:originalText", NS)
        name = _text(original) if original is not None else ""
    code, system = el.get("code"), el.get("codeSystem")
    return name, (str(system), str(code)) if code and system else None


def _on(value: str | None) -> str:
    """An HL7 TS as a partial ISO date: 1975, 2019-08, 2019-08-11."""
    digits = (value or "")[:8]
    if not digits.isdigit() or len(digits) not in (4, 6, 8):
        return ""
    parts = [digits[:4], digits[4:6], digits[6:8]]
    return "-".join(p for p in parts if p)


def _low(el: etree._Element) -> str:
    """The start of an entry: its effectiveTime's value, or its low."""
    for eff in el.findall("hl7:effectiveTime", NS):
        if eff.get("value"):
            return _on(eff.get("value"))
        low = eff.find("hl7:low", NS)
        if low is not None and low.get("value"):
            return _on(low.get("value"))
    return ""


def _dispensed(el: etree._Element) -> str:
    """A dispensation's date (the supply an entry refers to), for entries without their own."""
    for supply in el.findall("hl7:entryRelationship/hl7:supply", NS):
        on = _low(supply)
        time = supply.find("hl7:performer/hl7:time", NS)
        if not on and time is not None:
            on = _on(time.get("value"))
        if on:
            return on
    return ""


def _ended_before(el: etree._Element, today: date) -> bool:
    for eff in el.findall("hl7:effectiveTime", NS):
        high = eff.find("hl7:high", NS)
        if high is not None and high.get("value"):
            end = _on(high.get("value"))
            if len(end) == 10 and end < today.isoformat():
                return True
            if len(end) < 10 and end < today.isoformat()[: len(end)]:
                return True
    return False


def _negated(el: etree._Element) -> bool:
    return str(el.get("negationInd", "false")).lower() == "true"


def _section_code(el: etree._Element) -> str | None:
    parent = el.getparent()
    while parent is not None:
        if parent.tag == _h("section"):
            code = parent.find("hl7:code", NS)
            return None if code is None else code.get("code")
        parent = parent.getparent()
    return None


def _product(el: etree._Element) -> tuple[str, tuple[str, str] | None, etree._Element | None]:
    material = el.find("hl7:consumable/hl7:manufacturedProduct/hl7:manufacturedMaterial", NS)
    if material is None:
        return "", None, None
    name = _text(material.find("hl7:name", NS))
    coded_name, code = _coded(material.find("hl7:code", NS))
    return name or coded_name, code, material


def _quantity(el: etree._Element | None) -> str:
    if el is None:
        return ""
    low, high = el.find("hl7:low", NS), el.find("hl7:high", NS)
    if low is not None and low.get("value"):
        if high is not None and high.get("value") not in (None, low.get("value")):
            return f"{low.get('value')} à {high.get('value')} {_unit(low.get('unit'))}".strip()
        return f"{low.get('value')} {_unit(low.get('unit'))}".strip()
    if el.get("value"):
        return f"{el.get('value')} {_unit(el.get('unit'))}".strip()
    return ""


_UNITS = {"{tablet}": "comprimé(s)", "{capsule}": "gélule(s)", "1": "", "{dose}": "dose(s)"}


def _unit(unit: str | None) -> str:
    return _UNITS.get(unit or "", unit or "")


def _allergy(obs: etree._Element) -> Entry | None:
    if _negated(obs):
        return None
    agent = obs.find("hl7:participant[@typeCode='CSM']/hl7:participantRole/hl7:playingEntity", NS)
    label, code = ("", None)
    if agent is not None:
        label, code = _coded(agent.find("hl7:code", NS))
        label = label or _text(agent.find("hl7:name", NS))
    if not label:
        label, code = _coded(obs.find("hl7:value", NS))
    if not label:
        return None
    kind, _ = _coded(obs.find("hl7:code", NS))
    return Entry("allergy", label, kind, _low(obs), code)


def _problem(obs: etree._Element) -> Entry | None:
    if _negated(obs) or _section_code(obs) != PROBLEM_LIST:
        return None
    label, code = _coded(obs.find("hl7:value", NS))
    if not label:
        return None
    return Entry("problem", label, "", _low(obs), code)


# A treatment known only by its dispensation (a reimbursement history) is current for this long.
DISPENSATION_DAYS = 183


def _treatment(sa: etree._Element, today: date) -> Entry | None:
    if sa.get("moodCode") != "EVN" or _negated(sa) or _ended_before(sa, today):
        return None
    on = _low(sa)
    if not on:
        on = _dispensed(sa)
        if len(on) == 10 and (today - date.fromisoformat(on)).days > DISPENSATION_DAYS:
            return None  # dispensed long ago: no current treatment
    label, code, _ = _product(sa)
    if not label:
        return None
    route, _ = _coded(sa.find("hl7:routeCode", NS))
    dose = _quantity(sa.find("hl7:doseQuantity", NS))
    frequency = ""
    for eff in sa.findall("hl7:effectiveTime", NS):
        period = eff.find("hl7:period", NS)
        if eff.get(XSI_TYPE, "").endswith("PIVL_TS") and period is not None:
            value, unit = period.get("value"), period.get("unit")
            frequency = {("1", "d"): "par jour", ("1", "wk"): "par semaine"}.get(
                (str(value), str(unit)), f"toutes les {value} {unit}"
            )
    detail = ", ".join(p for p in (f"{dose} {frequency}".strip(), route.lower()) if p)
    return Entry("treatment", label, detail, on, code)


def _vaccination(sa: etree._Element) -> Entry | None:
    if _negated(sa):
        return None
    label, code, material = _product(sa)
    if not label:
        return None
    classes = [
        str(t.get("displayName"))
        for t in (material.findall("hl7:code/hl7:translation", NS) if material is not None else [])
        if t.get("codeSystem") == "2.16.840.1.113883.6.73" and t.get("displayName")
    ]
    lot = _text(material.find("hl7:lotNumberText", NS)) if material is not None else ""
    detail = ", ".join([*classes, *([f"lot {lot}"] if lot else [])])
    return Entry("vaccination", label, detail, _low(sa) or _dispensed(sa), code)


def _result(obs: etree._Element) -> Entry | None:
    label, code = _coded(obs.find("hl7:code", NS))
    value = obs.find("hl7:value", NS)
    if not label or value is None:
        return None
    kind = value.get(XSI_TYPE, "")
    if kind.endswith("PQ"):
        shown = f"{value.get('value', '')} {value.get('unit', '')}".strip()
    elif kind.endswith(("CD", "CE", "CV")):
        shown, _ = _coded(value)
    else:
        shown = _text(value)
    if not shown:
        return None
    interpretation, _ = _coded(obs.find("hl7:interpretationCode", NS))
    detail = f"{shown} ({interpretation})" if interpretation else shown
    return Entry("result", label, detail, _low(obs), code)


def extract(content: bytes, today: date) -> list[Entry]:
    """The summary's entries in one document, in document order; [] for a document that is
    no CDA or carries no structured entry. A malformed CDA raises InvalidInput."""
    if not looks_like_cda(content):
        return []
    root = parse_root(content)
    out: list[Entry] = []
    for el in root.iter(_h("observation"), _h("substanceAdministration")):
        ids = _templates(el)
        entry: Entry | None = None
        if el.tag == _h("observation"):
            if ALLERGY in ids:
                entry = _allergy(el)
            elif PROBLEM in ids:
                entry = _problem(el)
            elif LAB_RESULT in ids:
                entry = _result(el)
        elif IMMUNIZATION in ids:
            entry = _vaccination(el)
        elif MEDICATION in ids:
            entry = _treatment(el, today)
        if entry is not None:
            out.append(entry)
    return out


def key(entry: Entry) -> tuple[str, str, str]:
    """What makes two entries the same line: the kind and the code, else the label (case and
    spaces ignored); for a vaccination, its date too (each injection is a line of its own)."""
    what = (
        f"{entry.code[0]}|{entry.code[1]}"
        if entry.code is not None
        else " ".join(entry.label.casefold().split())
    )
    return entry.kind, what, entry.on if entry.kind == "vaccination" else ""
