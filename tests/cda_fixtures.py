"""Fictional CDA R2 documents for the tests, written for this project.

The CI-SIS example documents published by ANS carry no licence, so they stay out of the
repository. These documents have the same header facts as those examples (document type, title,
dates, confidentiality, the patient's INS under the demonstration OID and a local identifier), a
short narrative body, and nothing else: the server reads only the header.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

# The patient of the documents: a fictional INS under the INS demonstration OID.
CDA_PATIENT = ("1.2.250.1.213.1.4.10", "279035121518989")
LOCAL_ID = ("1.2.3.4.567.8.9.10", "1234567890121")


@dataclass(frozen=True)
class CdaSpec:
    type_code: str
    code_system: str
    title: str
    effective: str  # HL7 TS
    service_low: str
    service_high: str | None
    local_id: bool = True
    unstructured: bool = False


SPECS: dict[str, CdaSpec] = {
    "lab-report": CdaSpec(
        "11502-2",
        "2.16.840.1.113883.6.1",
        "Compte rendu d'examens biologiques",
        "20210401181000+0200",
        "20210104092200+0100",
        "20210104160500+0100",
    ),
    "reimbursement": CdaSpec(
        "REMB",
        "1.2.250.1.213.1.1.4.12",
        "Données de remboursement",
        "20190701174900+0200",
        "20190101154500+0100",
        "20190701164500+0200",
    ),
    "unstructured": CdaSpec(
        "11502-2",
        "2.16.840.1.113883.6.1",
        "Compte rendu d'examens biologiques",
        "20210401144745+0200",
        "20210104134700+0100",
        "20210104135500+0100",
        unstructured=True,
    ),
    "imaging": CdaSpec(
        "18748-4",
        "2.16.840.1.113883.6.1",
        "Compte rendu d'imagerie médicale - scanner thoracique",
        "20210108111700+0100",
        "20210108102500+0100",
        "20210108111700+0100",
    ),
    "discharge-letter": CdaSpec(
        "11490-0",
        "2.16.840.1.113883.6.1",
        "Lettre de liaison à la sortie de l'établissement de santé",
        "20191203133000+0100",
        "20191029111700+0100",
        "20191203133000+0100",
    ),
    "vaccinations": CdaSpec(
        "11369-6",
        "2.16.840.1.113883.6.1",
        "Historique de vaccinations",
        "20210409180000+0200",
        "20210409180000+0200",
        None,
        local_id=False,
    ),
    "medical-summary": CdaSpec(
        "SYNTH",
        "1.2.250.1.213.1.1.4.12",
        "Synthèse Médicale",
        "20200312111700+0100",
        "20200312111700+0100",
        None,
    ),
    "patient-summary": CdaSpec(
        "60591-5",
        "2.16.840.1.113883.6.1",
        "Synthèse du patient (IPS-FR)",
        "20240115100000+0100",
        "20240115100000+0100",
        None,
    ),
    "prescription": CdaSpec(
        "57833-6",
        "2.16.840.1.113883.6.1",
        "Prescription de médicaments et/ou de dispositifs médicaux",
        "20231201093000+0100",
        "20231201091000+0100",
        "20240730101000+0200",
    ),
}


def cda_document(
    name: str, patient: tuple[str, str] = CDA_PATIENT, sections: str | None = None
) -> bytes:
    """A fictional CDA R2 document of the kind ``name`` (a key of :data:`SPECS`); with
    ``sections``, its structured body is those ``<component><section>`` elements."""
    s = SPECS[name]
    ids = [f"<id root={quoteattr(patient[0])} extension={quoteattr(patient[1])}/>"]
    if s.local_id:
        ids.append(f"<id root={quoteattr(LOCAL_ID[0])} extension={quoteattr(LOCAL_ID[1])}/>")
    high = f'<high value="{s.service_high}"/>' if s.service_high else ""
    if s.unstructured:
        body = (
            '<nonXMLBody><text mediaType="text/plain" representation="B64">'
            "Q29tcHRlIHJlbmR1IGZpY3RpZg==</text></nonXMLBody>"
        )
    elif sections is not None:
        body = f"<structuredBody>{sections}</structuredBody>"
    else:
        body = (
            "<structuredBody><component><section><title>Résumé</title>"
            f"<text>Document fictif : {escape(s.title)}.</text>"
            "</section></component></structuredBody>"
        )
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <id root="1.2.250.1.999.1.1" extension="{name}-0001"/>
  <code code="{s.type_code}" codeSystem="{s.code_system}" displayName={quoteattr(s.title)}/>
  <title>{escape(s.title)}</title>
  <effectiveTime value="{s.effective}"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <recordTarget>
    <patientRole>
      {"".join(ids)}
      <patient>
        <name><given>Camille</given><family qualifier="BR">FICTIF</family></name>
        <administrativeGenderCode code="F" codeSystem="2.16.840.1.113883.5.1"/>
        <birthTime value="19790301"/>
      </patient>
    </patientRole>
  </recordTarget>
  <documentationOf>
    <serviceEvent>
      <effectiveTime><low value="{s.service_low}"/>{high}</effectiveTime>
    </serviceEvent>
  </documentationOf>
  <component>{body}</component>
</ClinicalDocument>
"""
    return xml.encode("utf-8")
