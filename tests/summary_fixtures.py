"""Structured CDA bodies for the summary of care, written for this project (fictional content).

They follow the entry templates of the CI-SIS example documents published by ANS (VSM 1.4
medical summary, vaccination note VAC, lab report BIO-CR-BIO) and of IPS-FR (the same IHE PCC
entries under the IPS sections): the Problem Concern act holding a Problem Entry, the Allergy
and Intolerance Concern holding its entry with the agent as a participant, the Medications and
Immunizations entries with their manufactured product, the laboratory observations. Those ANS
examples carry no licence and stay out of the repository; ``scripts/summary_of_examples.py``
runs the same reader on them where they are present (``docs/summary.md`` shows its output).
Each body also holds entries the summary must leave out: a negated problem, a history item,
an ended treatment, a refused vaccination.
"""

from __future__ import annotations

CIM10 = "2.16.840.1.113883.6.3"
CIS = "1.2.250.1.213.2.3.1"
ATC = "2.16.840.1.113883.6.73"
LOINC = "2.16.840.1.113883.6.1"
SNOMED = "2.16.840.1.113883.6.96"
EDQM = "0.4.0.127.0.16.1.1.2.1"


def _section(code: str, title: str, entries: str) -> str:
    return (
        f'<component><section><code code="{code}" codeSystem="{LOINC}"/>'
        f"<title>{title}</title><text>{title}</text>{entries}</section></component>"
    )


def problem(code: str, name: str, low: str, *, negated: bool = False) -> str:
    neg = "true" if negated else "false"
    return f"""<entry><act classCode="ACT" moodCode="EVN">
  <templateId root="2.16.840.1.113883.10.20.1.27"/>
  <templateId root="1.3.6.1.4.1.19376.1.5.3.1.4.5.1"/>
  <templateId root="1.3.6.1.4.1.19376.1.5.3.1.4.5.2"/>
  <templateId root="1.2.250.1.213.1.1.3.39"/>
  <code nullFlavor="NA"/><statusCode code="active"/>
  <effectiveTime><low value="{low}"/></effectiveTime>
  <entryRelationship typeCode="SUBJ">
  <observation classCode="OBS" moodCode="EVN" negationInd="{neg}">
    <templateId root="2.16.840.1.113883.10.20.1.28"/>
    <templateId root="1.3.6.1.4.1.19376.1.5.3.1.4.5"/>
    <templateId root="1.2.250.1.213.1.1.3.37"/>
    <code code="282291009" displayName="interprétation diagnostique" codeSystem="{SNOMED}"/>
    <statusCode code="completed"/>
    <effectiveTime><low value="{low}"/></effectiveTime>
    <value xsi:type="CD" code="{code}" displayName="{name}" codeSystem="{CIM10}"/>
  </observation></entryRelationship>
</act></entry>"""


def allergy(agent_code: str, agent: str, low: str) -> str:
    return f"""<entry><act classCode="ACT" moodCode="EVN">
  <templateId root="1.3.6.1.4.1.19376.1.5.3.1.4.5.1"/>
  <templateId root="1.3.6.1.4.1.19376.1.5.3.1.4.5.3"/>
  <templateId root="1.2.250.1.213.1.1.3.40"/>
  <code nullFlavor="NA"/><statusCode code="active"/>
  <effectiveTime><low nullFlavor="UNK"/></effectiveTime>
  <entryRelationship typeCode="SUBJ">
  <observation classCode="OBS" moodCode="EVN" negationInd="false">
    <templateId root="2.16.840.1.113883.10.20.1.18"/>
    <templateId root="2.16.840.1.113883.10.20.1.28"/>
    <templateId root="1.3.6.1.4.1.19376.1.5.3.1.4.5"/>
    <templateId root="1.3.6.1.4.1.19376.1.5.3.1.4.6"/>
    <templateId root="1.2.250.1.213.1.1.3.41"/>
    <code code="416098002" displayName="allergie médicamenteuse" codeSystem="{SNOMED}"/>
    <statusCode code="completed"/>
    <effectiveTime><low value="{low}"/></effectiveTime>
    <value xsi:type="CD"><originalText><reference value="#"/></originalText></value>
    <participant typeCode="CSM"><participantRole classCode="MANU">
      <playingEntity classCode="MMAT">
        <code code="{agent_code}" displayName="{agent}" codeSystem="{ATC}"/><name/>
      </playingEntity>
    </participantRole></participant>
  </observation></entryRelationship>
</act></entry>"""


def treatment(cis: str, name: str, low: str, high: str | None = None) -> str:
    end = f'<high value="{high}"/>' if high else '<high nullFlavor="UNK"/>'
    return f"""<entry><substanceAdministration classCode="SBADM" moodCode="EVN">
  <templateId root="2.16.840.1.113883.10.20.1.24"/>
  <templateId root="1.3.6.1.4.1.19376.1.5.3.1.4.7"/>
  <templateId root="1.2.250.1.213.1.1.3.42"/>
  <templateId root="1.3.6.1.4.1.19376.1.5.3.1.4.7.1"/>
  <code code="DRUG" codeSystem="2.16.840.1.113883.5.4"/>
  <statusCode code="completed"/>
  <effectiveTime xsi:type="IVL_TS"><low value="{low}"/>{end}</effectiveTime>
  <effectiveTime xsi:type="PIVL_TS" operator="A"><period value="1" unit="d"/></effectiveTime>
  <routeCode code="20053000" displayName="Voie orale" codeSystem="{EDQM}"/>
  <doseQuantity><low value="1" unit="{{tablet}}"/><high value="1" unit="{{tablet}}"/></doseQuantity>
  <consumable><manufacturedProduct>
    <templateId root="1.3.6.1.4.1.19376.1.5.3.1.4.7.2"/>
    <templateId root="1.2.250.1.213.1.1.3.43"/>
    <manufacturedMaterial><code code="{cis}" displayName="{name}" codeSystem="{CIS}"/>
      <name>{name}</name></manufacturedMaterial>
  </manufacturedProduct></consumable>
</substanceAdministration></entry>"""


def vaccination(
    cis: str, name: str, when: str, atc: tuple[str, str], lot: str, *, refused: bool = False
) -> str:
    neg = "true" if refused else "false"
    return f"""<entry><substanceAdministration classCode="SBADM" moodCode="EVN" negationInd="{neg}">
  <templateId root="2.16.840.1.113883.10.20.1.24"/>
  <templateId root="1.3.6.1.4.1.19376.1.5.3.1.4.12"/>
  <templateId root="1.2.250.1.213.1.1.3.45"/>
  <code code="IMMUNIZ" codeSystem="2.16.840.1.113883.5.4"/>
  <statusCode code="completed"/>
  <effectiveTime value="{when}"/>
  <consumable typeCode="CSM"><manufacturedProduct>
    <templateId root="1.3.6.1.4.1.19376.1.5.3.1.4.7.2"/>
    <manufacturedMaterial>
      <code code="{cis}" displayName="{name}" codeSystem="{CIS}">
        <translation code="{atc[0]}" displayName="{atc[1]}" codeSystem="{ATC}"/>
      </code>
      <name>{name}</name><lotNumberText>{lot}</lotNumberText>
    </manufacturedMaterial>
  </manufacturedProduct></consumable>
</substanceAdministration></entry>"""


def result(loinc: str, name: str, value: str, unit: str, when: str) -> str:
    return f"""<entry><observation classCode="OBS" moodCode="EVN">
  <templateId root="1.3.6.1.4.1.19376.1.3.1.6"/>
  <templateId root="1.2.250.1.213.1.1.3.80"/>
  <code code="{loinc}" displayName="{name}" codeSystem="{LOINC}"/>
  <statusCode code="completed"/>
  <effectiveTime value="{when}"/>
  <value xsi:type="PQ" value="{value}" unit="{unit}"/>
</observation></entry>"""


DIABETES = ("E11.9", "Diabète sucré de type 2, sans complication")
AMOXICILLIN = ("J01CA04", "Amoxicilline")
METFORMIN = ("60000101", "METFORMINE FICTIVE 850 mg, comprimé")
HBA1C = ("4548-4", "Hémoglobine A1c/Hémoglobine totale Sang ; Numérique")
DTCP = ("60000202", "VACCIN DTCP FICTIF, suspension injectable")
BCG = ("60000303", "VACCIN BCG FICTIF, poudre pour suspension injectable")

# The medical summary (VSM): a current problem, a negated one, a history item, an allergy, a
# current treatment and one that ended.
VSM = (
    _section(
        "11450-4",
        "Pathologie en cours",
        problem(*DIABETES, "20180301")
        + problem("I10", "Hypertension essentielle", "20190101", negated=True),
    )
    + _section("11348-0", "Antécédents médicaux", problem("K35.8", "Appendicite", "19950612"))
    + _section("48765-2", "Allergies et hypersensibilités", allergy(*AMOXICILLIN, "20150610"))
    + _section(
        "10160-0",
        "Traitements",
        treatment(*METFORMIN, "20180301")
        + treatment("60000404", "ANTIBIOTIQUE FICTIF 1 g", "20191201", "20191210"),
    )
)

# The vaccination note: two injections given, one refused.
VAC = _section(
    "11369-6",
    "Historique des vaccinations",
    vaccination(
        *DTCP, "20210409", ("J07CA02", "Diphtérie-tétanos-coqueluche-poliomyélite"), "L-2021"
    )
    + vaccination(*BCG, "1990", ("J07AN01", "Vaccin BCG vivant atténué"), "L-1990")
    + vaccination(
        "60000505",
        "VACCIN REFUSE FICTIF",
        "20220101",
        ("J07BB", "Vaccin grippal"),
        "L-0",
        refused=True,
    ),
)

# The lab report: two results.
BIO = _section(
    "11502-2",
    "Biochimie",
    result(*HBA1C, "7.1", "%", "20240110")
    + result(
        "2345-7", "Glucose [Masse/Volume] Sérum/Plasma ; Numérique", "1.32", "g/L", "20240110"
    ),
)

# The patient summary (IPS-FR), newest: the same allergy, treatment and problem, and a newer
# HbA1c.
IPS = (
    _section("48765-2", "Allergies et intolérances", allergy(*AMOXICILLIN, "20150610"))
    + _section("10160-0", "Traitements", treatment(*METFORMIN, "20180301"))
    + _section("11450-4", "Problèmes", problem(*DIABETES, "20180301"))
    + _section("30954-2", "Résultats", result(*HBA1C, "6.8", "%", "20240114"))
)


def dispensed(cis: str, name: str, on: str) -> str:
    """A reimbursement history's entry (CNAM-HR): a product with no period, and the supply that
    dispensed it."""
    return f"""<entry><substanceAdministration classCode="SBADM" moodCode="EVN">
  <templateId root="1.3.6.1.4.1.19376.1.5.3.1.4.7"/>
  <templateId root="1.2.250.1.213.1.1.3.42"/>
  <statusCode code="completed"/>
  <effectiveTime xsi:type="IVL_TS"><low nullFlavor="UNK"/><high nullFlavor="UNK"/></effectiveTime>
  <consumable><manufacturedProduct><manufacturedMaterial>
    <code><translation code="{cis}" displayName="{name}"
      codeSystem="1.2.250.1.215.200.1.1.1"/></code>
    <name>{name}</name>
  </manufacturedMaterial></manufacturedProduct></consumable>
  <entryRelationship typeCode="REFR"><supply classCode="SPLY" moodCode="EVN">
    <templateId root="1.3.6.1.4.1.19376.1.5.3.1.4.7.3"/>
    <quantity value="1"/><performer typeCode="PRF"><time value="{on}"/></performer>
  </supply></entryRelationship>
</substanceAdministration></entry>"""
