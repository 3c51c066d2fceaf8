"""Between FHIR resources (plain dicts) and the gate's values."""

from __future__ import annotations

import base64
import binascii
import html
import uuid
from datetime import datetime
from typing import Any

from dmp.access.views import (
    CareSummary,
    DocumentView,
    ListView,
    NewDocument,
    RecordView,
    SummaryLine,
    TraceView,
)
from dmp.domain import valuesets
from dmp.domain.codes import (
    IDENTITY_DOCUMENT_SYSTEM,
    IDENTITY_DOCUMENTS,
    IDENTITY_STATUS_LABELS,
    IDENTITY_STATUS_SYSTEM,
    TYPE_LABELS,
    VisibilityFlag,
    as_uri,
    confidentiality_of,
)
from dmp.domain.ins import OID_NIA, OID_NIR, PatientKey, PatientRef, parse_ins_token
from dmp.errors import BadRequest, InvalidInput
from dmp.front.explain import explain

PDSM = "https://interop.esante.gouv.fr/ig/fhir/pdsm"
PROFILE_DOCREF = f"{PDSM}/StructureDefinition/pdsm-comprehensive-document-reference"
PDSM_SD = f"{PDSM}/StructureDefinition/"
EXT_ARCHIVED = f"{PDSM}/StructureDefinition/pdsm-ext-is-archived"
LOINC = "http://loinc.org"
TRE_A05 = "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire"
TRE_A03 = "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
TRE_R248 = "https://mos.esante.gouv.fr/NOS/TRE_R248-ModeAcces/FHIR/TRE-R248-ModeAcces"
FORMAT_SYSTEM = "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode"
PS_OID = "urn:oid:1.2.250.1.71.4.2.1"
STRUCT_OID = "urn:oid:1.2.250.1.71.4.2.2"
RFC3986 = "urn:ietf:rfc:3986"
DEFAULT_FORMAT = "urn:ihe:iti:xds:2017:mimeTypeSufficient"
INS_TYPES = {OID_NIR: "INS-NIR", OID_NIA: "INS-NIA"}  # fr-core identifier types


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


# -- identifiers ------------------------------------------------------------------------------


def doc_fhir_id(doc: DocumentView) -> str:
    """The resource id carries the patient key, so a read by id finds the record (patient-scoped
    storage) without a cross-patient index: ``<patient key>.<document logical id>``."""
    return f"{doc.patient_id}.{doc.logical_id}"


def parse_doc_id(fhir_id: str) -> tuple[PatientKey, str]:
    key, sep, logical = fhir_id.partition(".")
    if not sep or len(key) != 32 or not key.isalnum() or not logical.isalnum() or len(logical) > 32:
        raise InvalidInput("not a document id of this server", reason="not-found")
    return PatientKey(key), logical


def patient_ref(reference: str, *, test_mode: bool) -> PatientRef:
    """``Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|<INS>`` or ``Patient/<key>``."""
    if reference.startswith("Patient?identifier="):
        return parse_ins_token(reference.split("=", 1)[1], test_mode=test_mode)
    if reference.startswith("Patient/"):
        key = reference.removeprefix("Patient/")
        if len(key) == 32 and key.isalnum():
            return PatientKey(key)
    raise InvalidInput(f"unsupported patient reference {reference[:80]!r}")


# -- DocumentReference out ------------------------------------------------------------------------


def coded(vs: valuesets.ValueSet, code: str, system: str | None = None) -> dict[str, Any]:
    """A CodeableConcept with the system and display name its value set gives; a code of
    another system (``system``: SNOMED CT in the DMP guide's examples) as it was sent."""
    concept = vs.concepts.get(code)
    if system is not None and system not in _systems(vs):
        return {"coding": [{"system": system, "code": code}]}
    if concept is None:
        return {"coding": [{"code": code}]}
    return {"coding": [{"system": concept.system, "code": code, "display": concept.display}]}


def _systems(vs: valuesets.ValueSet) -> set[str]:
    """The code systems of a set, as FHIR names them and as ``urn:oid:``."""
    return {c.system for c in vs.concepts.values()} | {
        f"urn:oid:{c.system_oid}" for c in vs.concepts.values()
    }


def document_reference(doc: DocumentView, base: str) -> dict[str, Any]:
    fid = doc_fhir_id(doc)
    known_type = valuesets.document_types().concepts.get(doc.type_code)
    type_system = known_type.system if known_type else LOINC if "-" in doc.type_code else TRE_A05
    # Confidentiality and visibility, as JDV_J08 codes them (system and display name).
    j08 = valuesets.confidentiality_codes()
    labels: list[dict[str, Any]] = [coded(j08, doc.confidentiality)]
    for flag, on in (
        (VisibilityFlag.MASQUE_PS, doc.masked_ps),
        (VisibilityFlag.INVISIBLE_PATIENT, doc.invisible_patient),
        (VisibilityFlag.INVISIBLE_REPRESENTANTS_LEGAUX, doc.invisible_representatives),
    ):
        if on:
            labels.append(coded(j08, flag.value))
    author: dict[str, Any]
    if doc.author_kind == "patient":
        author = {"reference": f"Patient/{doc.patient_id}"}
    else:
        author = {"type": "Practitioner", "identifier": {"system": PS_OID, "value": doc.author_id}}
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": fid,
        "meta": {
            "versionId": str(doc.version),
            "lastUpdated": iso(doc.version_at or doc.submitted_at),
        },
        # XDS sourcePatientInfo: the patient as the source knew them, here this record's
        # patient (the profile wants it contained).
        "contained": [source_patient(doc.patient_id)],
        "extension": [{"url": EXT_ARCHIVED, "valueBoolean": doc.status == "archived"}],
        "masterIdentifier": {"system": RFC3986, "value": as_uri(doc.unique_id)},
        "identifier": [
            {"use": "official", "system": RFC3986, "value": f"urn:uuid:{_uuid(doc.id)}"}
        ],
        "status": "superseded" if doc.status == "superseded" else "current",
        "type": {
            "coding": [
                {
                    "system": type_system,
                    "code": doc.type_code,
                    "display": known_type.display
                    if known_type
                    else TYPE_LABELS.get(doc.type_code, doc.type_code),
                }
            ]
        },
        "category": [{"coding": [{"system": TRE_A03, "code": doc.class_code}]}],
        "subject": {"reference": f"Patient/{doc.patient_id}"},
        "date": iso(doc.submitted_at),
        "author": [author],
        "custodian": {"identifier": {"system": STRUCT_OID, "value": "dmp"}},
        "securityLabel": labels,
        "content": [
            {
                "attachment": {
                    "contentType": doc.mime_type,
                    "language": doc.language,
                    "url": f"{base}/Binary/{fid}",
                    "size": doc.size,
                    "hash": base64.b64encode(bytes.fromhex(doc.sha1)).decode(),
                    "title": doc.title,
                    "creation": iso(doc.creation_time),
                },
                "format": {"system": FORMAT_SYSTEM, "code": doc.format_code},
            }
        ],
        "context": {
            "period": {"start": iso(doc.service_start)},
            "sourcePatientInfo": {"reference": "#source-patient"},
        },
    }
    if doc.author_structure:
        author["extension"] = [
            {
                "url": "https://interop.esante.gouv.fr/ig/fhir/pdsm/author-institution",
                "valueIdentifier": {"system": STRUCT_OID, "value": doc.author_structure},
            }
        ]
    if doc.service_stop:
        resource["context"]["period"]["end"] = iso(doc.service_stop)
    if doc.facility_type:
        resource["context"]["facilityType"] = coded(
            valuesets.facility_types(), doc.facility_type, doc.facility_system
        )
    if doc.practice_setting:
        resource["context"]["practiceSetting"] = coded(
            valuesets.practice_settings(), doc.practice_setting, doc.practice_system
        )
    relations = [
        {"code": code, "target": {"reference": f"DocumentReference/{doc.patient_id}.{target}"}}
        for code, target in (("replaces", doc.replaces_id), ("appends", doc.appends_id))
        if target
    ]
    if relations:
        resource["relatesTo"] = relations
    # The comprehensive profile needs the facility type and the practice setting, which a
    # simplified publication may not have given: the profile is claimed only when they are.
    if doc.facility_type and doc.practice_setting:
        resource["meta"]["profile"] = [PROFILE_DOCREF]
    return resource


def source_patient(patient_key: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "source-patient",
        "link": [{"other": {"reference": f"Patient/{patient_key}"}, "type": "seealso"}],
    }


def _uuid(hex32: str) -> str:
    h = hex32.ljust(32, "0")
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def binary(doc: DocumentView, content: bytes) -> dict[str, Any]:
    return {
        "resourceType": "Binary",
        "id": doc_fhir_id(doc),
        "contentType": doc.mime_type,
        "data": base64.b64encode(content).decode(),
    }


# -- DocumentReference in -------------------------------------------------------------------------


def codes(concept: Any) -> list[tuple[str | None, str]]:
    if not isinstance(concept, dict):
        return []
    return [
        (c.get("system"), str(c["code"]))
        for c in concept.get("coding", []) or []
        if isinstance(c, dict) and c.get("code")
    ]


def _time(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{field} is not a FHIR dateTime: {str(value)[:40]!r}") from None
    if parsed.tzinfo is None:
        raise InvalidInput(f"{field} must carry a time zone")
    return parsed


def security_flags(labels: list[Any]) -> tuple[str, dict[VisibilityFlag, bool]]:
    """The confidentiality level and the visibility flags among security labels."""
    conf, flags, unknown = confidentiality_of(
        code for label in labels or [] for _system, code in codes(label)
    )
    if unknown:
        raise InvalidInput(f"unknown security label {unknown[0]!r}")
    return conf, flags


def checked_codes(
    concept: Any, vs: valuesets.ValueSet, element: str
) -> list[tuple[str | None, str]]:
    """Codings of an element bound to a CI-SIS value set: a code given in one of the set's
    own code systems must be in the set (422 naming the element); codes of other systems (the
    DMP guide's examples send SNOMED CT) are taken as they are."""
    found = codes(concept)
    systems = _systems(vs)
    for system, code in found:
        if system in systems and code not in vs:
            raise InvalidInput(
                f"DocumentReference.{element}: {code!r} is not in {vs.url.rsplit('/', 1)[-1]}",
                reason=f"DocumentReference.{element}",
            )
    return found


def _other_system(found: list[tuple[str | None, str]], vs: valuesets.ValueSet) -> str | None:
    """The system of the first coding when it is not one of the set's own (kept to be given
    back as sent); None for the set's systems or no system."""
    if not found or found[0][0] is None or found[0][0] in _systems(vs):
        return None
    return found[0][0]


def new_document(res: dict[str, Any], content: bytes | None) -> tuple[NewDocument, str | None]:
    """Metadata from a DocumentReference (MHD comprehensive or PDSm simplified publish).

    Returns the metadata and the id of the document it replaces, if any. Missing type, title or
    dates may be filled from a CDA header by the caller (ITI-105 without metadata)."""
    contents = res.get("content") or []
    if not contents or not isinstance(contents[0], dict) or "attachment" not in contents[0]:
        raise InvalidInput("DocumentReference.content.attachment is required", reason="content")
    att = contents[0]["attachment"]
    types = codes(res.get("type"))
    if not types:
        raise InvalidInput(
            "DocumentReference.type is required: the DMP's access rules depend on the "
            "document type (JDV_J07-XdsTypeCode-CISIS)",
            reason="DocumentReference.type",
        )
    type_code = types[0][1]
    classes = codes((res.get("category") or [None])[0])
    fmt = contents[0].get("format")
    format_code = (
        str(fmt.get("code") or DEFAULT_FORMAT) if isinstance(fmt, dict) else DEFAULT_FORMAT
    )
    conf, flags = security_flags(res.get("securityLabel") or [])
    period = (res.get("context") or {}).get("period") or {}
    # MHD minimal metadata: without a creation time the gate takes the submission's.
    creation = _time(att.get("creation"), "attachment.creation") or _time(res.get("date"), "date")
    start = _time(period.get("start"), "context.period.start") or creation
    size = att.get("size")
    sha1 = None
    if att.get("hash"):
        try:
            sha1 = base64.b64decode(att["hash"], validate=True).hex()
        except (binascii.Error, ValueError):
            raise InvalidInput("attachment.hash is not base64") from None
    ctx = res.get("context") or {}
    facility = checked_codes(
        ctx.get("facilityType"), valuesets.facility_types(), "context.facilityType"
    )
    setting = checked_codes(
        ctx.get("practiceSetting"), valuesets.practice_settings(), "context.practiceSetting"
    )
    replaces = appends = None
    for n, rel in enumerate(res.get("relatesTo") or []):
        if not isinstance(rel, dict):
            continue
        target = str((rel.get("target") or {}).get("reference", "")).removeprefix(
            "DocumentReference/"
        )
        if rel.get("code") == "replaces":
            replaces = target
        elif rel.get("code") == "appends":
            if "." not in target:
                raise InvalidInput(
                    f"DocumentReference.relatesTo[{n}]: an addendum names a stored document "
                    "(DocumentReference/<id>)",
                    reason=f"DocumentReference.relatesTo[{n}]",
                )
            appends = target.rsplit(".", 1)[1]
        else:
            raise InvalidInput(
                f"DocumentReference.relatesTo[{n}].code: {str(rel.get('code'))[:20]!r} is not "
                "kept (replaces and appends are)",
                reason=f"DocumentReference.relatesTo[{n}]",
            )
    master = res.get("masterIdentifier") or {}
    meta = NewDocument(
        type_code=type_code,
        format_code=format_code,
        mime_type=str(att.get("contentType") or ""),
        title=str(att.get("title") or res.get("description") or ""),
        creation_time=creation,
        service_start=start,
        unique_id=master.get("value"),
        service_stop=_time(period.get("end"), "context.period.end"),
        confidentiality=conf,
        masked_ps=flags[VisibilityFlag.MASQUE_PS],
        invisible_patient=flags[VisibilityFlag.INVISIBLE_PATIENT],
        invisible_representatives=flags[VisibilityFlag.INVISIBLE_REPRESENTANTS_LEGAUX],
        facility_type=facility[0][1] if facility else None,
        practice_setting=setting[0][1] if setting else None,
        facility_system=_other_system(facility, valuesets.facility_types()),
        practice_system=_other_system(setting, valuesets.practice_settings()),
        language=str(att.get("language") or "fr-FR"),
        expected_size=int(size) if size is not None else None,
        expected_sha1=sha1,
        class_code=classes[0][1] if classes else None,
        appends=appends,
    )
    return meta, replaces


def attachment_bytes(res: dict[str, Any]) -> bytes | None:
    att = ((res.get("content") or [{}])[0] or {}).get("attachment") or {}
    data = att.get("data")
    if data is None:
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("attachment.data is not valid base64") from None


# -- Patient, AuditEvent, Bundle -----------------------------------------------------------------


def patient(view: RecordView, key: str) -> dict[str, Any]:
    d = view.demographics
    names: list[dict[str, Any]] = [
        {"use": "official", "family": d.birth_family_name, "given": d.given_names.split()}
    ]
    if d.used_name:
        names.append({"use": "usual", "family": d.used_name})
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": key,
        "identifier": [
            {
                "use": "official",
                "system": f"urn:oid:{view.ins.oid}",
                "value": view.ins.value,
                "type": {
                    "coding": [
                        {
                            "system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203",
                            "code": INS_TYPES.get(view.ins.oid, "INS-NIR-TEST"),
                        }
                    ]
                },
            }
        ],
        "active": view.status == "active",
        "name": names,
        "gender": {"M": "male", "F": "female"}.get(d.sex, "unknown"),
        "birthDate": d.birth_date.isoformat(),
        "address": [
            {
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-precinct",
                        "valueString": d.residence_commune,
                    }
                ]
            }
        ],
    }
    resource["extension"] = [identity_reliability(view)]
    if view.closed_at:
        resource["extension"].append(
            {
                "url": "https://interop.esante.gouv.fr/ig/fhir/pdsm4dmp/StructureDefinition/dmp-fermeture",
                "extension": [
                    {"url": "dateFermeture", "valueDateTime": iso(view.closed_at)},
                    {"url": "motifFermeture", "valueString": view.closure_reason or ""},
                ],
            }
        )
    if view.medecin_traitant:
        resource["generalPractitioner"] = [
            {"identifier": {"system": PS_OID, "value": view.medecin_traitant}}
        ]
    return resource


IDENTITY_RELIABILITY = (
    "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability"
)


def identity_reliability(view: RecordView) -> dict[str, Any]:
    """FR Core's identity-reliability extension: the RNIV status (PROV or QUAL), and the
    identity document checked (validation mode) and when."""
    parts: list[dict[str, Any]] = [
        {
            "url": "identityStatus",
            "valueCoding": {
                "system": IDENTITY_STATUS_SYSTEM,
                "code": view.identity_status,
                "display": IDENTITY_STATUS_LABELS.get(view.identity_status, view.identity_status),
            },
        }
    ]
    if view.identity_document:
        parts.append(
            {
                "url": "validationMode",
                "valueCoding": {
                    "system": IDENTITY_DOCUMENT_SYSTEM,
                    "code": view.identity_document,
                    "display": IDENTITY_DOCUMENTS.get(
                        view.identity_document, view.identity_document
                    ),
                },
            }
        )
    if view.identity_checked_at:
        parts.append(
            {"url": "validationDate", "valueDate": view.identity_checked_at.date().isoformat()}
        )
    return {"url": IDENTITY_RELIABILITY, "extension": parts}


_ACT_REASON = {"normal": "TREAT", "bris_de_glace": "ETREAT", "centre_15": "ETREAT"}


def _client_agent(client_id: str | None) -> list[dict[str, Any]]:
    """The software or app an access came through, on the requestor's behalf (BALP's client
    application agent); none for the portals and commands."""
    if not client_id:
        return []
    return [
        {
            "type": {
                "coding": [
                    {
                        "system": "http://dicom.nema.org/resources/ontology/DCM",
                        "code": "110150",
                        "display": "Application",
                    }
                ]
            },
            "who": {"identifier": {"system": "urn:dmp:client", "value": client_id}},
            "requestor": False,
        }
    ]


def audit_event(t: TraceView, patient_key: str, n: int) -> dict[str, Any]:
    """IHE BALP shape: who, what, when, why (purpose of use, the rule that allowed it with its
    legal source and what allowed it this time), outcome."""
    why = explain(t)
    return {
        "resourceType": "AuditEvent",
        "id": f"{patient_key}.{n}",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
        },
        "subtype": [
            {"system": "https://dmp.example.org/fhir/CodeSystem/dmp-audit-action", "code": t.action}
        ],
        "action": {
            "document.create": "C",
            "document.replace": "C",
            "document.update": "U",
            "document.delete": "D",
        }.get(t.action, "R" if "read" in t.action or "search" in t.action else "E"),
        "recorded": iso(t.at),
        "outcome": "0" if t.outcome == "success" else "4",
        "outcomeDesc": t.reason,
        "purposeOfEvent": [
            {
                "coding": [
                    {"system": TRE_R248, "code": t.purpose},
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                        "code": _ACT_REASON.get(t.purpose, "TREAT"),
                    },
                ]
            }
        ],
        "agent": [
            {
                "type": {"text": t.actor_kind},
                "who": {
                    "identifier": {
                        "system": PS_OID if t.actor_kind == "professional" else "urn:dmp:actor",
                        "value": t.actor_id,
                    }
                },
                "requestor": True,
                "policy": [f"urn:dmp:rule:{why.rule.replace(' ', '-')}"],
            },
            *_client_agent(t.client_id),
        ],
        "source": {"observer": {"display": "dmp"}},
        "entity": [{"what": {"reference": f"Patient/{patient_key}"}, "role": {"code": "1"}}]
        + [
            {"what": {"reference": f"DocumentReference/{patient_key}.{d}"}}
            for d in ((t.target,) if t.target and t.action.startswith("document.") else ())
            + t.documents
        ]
        + [
            {
                "what": {"identifier": {"system": "urn:dmp:reason", "value": t.reason}},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                    "display": "System Object",
                },
                "name": why.sentence,
                "description": why.text(),
                "detail": [
                    {"type": "rule", "valueString": why.rule},
                    {"type": "legal-source", "valueString": why.source},
                    *({"type": "basis", "valueString": line} for line in why.details),
                    *({"type": "document", "valueString": line} for line in why.documents),
                ],
            }
        ],
    }


def searchset(
    resources: list[dict[str, Any]],
    total: int,
    links: dict[str, str],
    profile: str | None = None,
) -> dict[str, Any]:
    """A searchset Bundle; it claims ``profile`` (a PDSm find-*-response) only when every
    resource it holds claims its own PDSm profile."""
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": [{"relation": rel, "url": url} for rel, url in links.items()],
    }
    if resources:  # FHIR JSON has no empty arrays (ele-1): no match, no entry element
        # fullUrl where the resource can be read at its own URL (Consent and AuditEvent
        # have no read interaction here).
        bundle["entry"] = [
            {
                **({"fullUrl": r["_fullUrl"]} if "_fullUrl" in r else {}),
                "resource": {k: v for k, v in r.items() if k != "_fullUrl"},
                "search": {"mode": "match"},
            }
            for r in resources
        ]
    if profile and all((r.get("meta") or {}).get("profile") for r in resources):
        bundle["meta"] = {"profile": [profile]}
    return bundle


MHD_LIST_TYPES = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"


MHD_EXT = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/"
PDSM_IS_ARCHIVED = (
    "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived"
)


def list_source(lst: ListView) -> tuple[tuple[str, ...], tuple[str, str]]:
    """Who submitted a List, as a reference target: the patient (their record's key) or a
    professional (their idNatPS, a PractitionerRole known by its identifier)."""
    if lst.author_id.startswith("patient:"):
        return ("Patient",), ("", lst.patient_id)
    return ("PractitionerRole", "Practitioner"), (PS_OID, lst.author_id)


def list_resource(lst: ListView) -> dict[str, Any]:
    """An MHD SubmissionSet or Folder List, with the documents the caller may see. It claims
    the PDSm profile of its kind when it has what that profile requires (a designationType;
    for a SubmissionSet a sourceId, for a Folder a title)."""
    kinds, (system, value) = list_source(lst)
    contained: list[dict[str, Any]] = []
    if kinds == ("Patient",):
        contained.append(source_patient(value))
        source: dict[str, Any] = {"reference": f"Patient/{value}"}
    else:
        role: dict[str, Any] = {
            "resourceType": "PractitionerRole",
            "id": "author",
            "practitioner": {"identifier": {"system": system, "value": value}},
        }
        if lst.author_structure:
            role["organization"] = {
                "identifier": {"system": STRUCT_OID, "value": lst.author_structure}
            }
        contained.append(role)
        source = {"reference": "#author"}
    if lst.author_structure:
        source["extension"] = [
            {
                "url": MHD_EXT + "ihe-authorOrg",
                "valueReference": {
                    "identifier": {"system": STRUCT_OID, "value": lst.author_structure}
                },
            }
        ]
    extensions: list[dict[str, Any]] = []
    if lst.code:
        extensions.append(
            {
                "url": MHD_EXT + "ihe-designationType",
                "valueCodeableConcept": {"coding": [{"code": lst.code}]},
            }
        )
    if lst.kind == "submissionset" and lst.source_id:
        ident = {"value": lst.source_id}
        if lst.source_id.startswith("urn:"):
            ident = {"system": RFC3986, **ident}
        extensions.append({"url": MHD_EXT + "ihe-sourceId", "valueIdentifier": ident})
    extensions.append({"url": PDSM_IS_ARCHIVED, "valueBoolean": False})
    resource: dict[str, Any] = {
        "resourceType": "List",
        "id": list_fhir_id(lst),
        "extension": extensions,
        "status": "current",
        "mode": "working",
        "code": {"coding": [{"system": MHD_LIST_TYPES, "code": lst.kind}]},
        "subject": {"reference": f"Patient/{lst.patient_id}"},
        "date": iso(lst.submitted_at),
        "entry": [
            {"item": {"reference": f"DocumentReference/{lst.patient_id}.{d}"}}
            for d in lst.document_ids
        ],
    }
    if lst.kind == "submissionset":  # a Folder has no source in MHD
        resource["contained"] = contained
        resource["source"] = source
    if lst.title:
        resource["title"] = lst.title
    if lst.unique_id:
        resource["identifier"] = [
            {"use": "usual", "system": RFC3986, "value": as_uri(lst.unique_id)}
        ]
    if lst.kind == "submissionset" and lst.code and lst.source_id:
        resource["meta"] = {"profile": [PDSM_SD + "pdsm-submissionset-comprehensive"]}
    elif lst.kind == "folder" and lst.code and lst.title:
        resource["meta"] = {"profile": [PDSM_SD + "pdsm-folder-comprehensive"]}
    return resource


def list_fhir_id(lst: ListView) -> str:
    """Like a document's: ``<patient key>.<list id>`` (decision 0004)."""
    return f"{lst.patient_id}.{lst.id}"


def consent(
    patient_key: str,
    suffix: str,
    *,
    permit: bool,
    professional: str | None = None,
    purpose: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """A Consent for one decision of the holder: a professional authorised or blocked, or an
    opposition to an access mode."""
    provision: dict[str, Any] = {"type": "permit" if permit else "deny"}
    if professional:
        provision["actor"] = [
            {
                "role": {"coding": [{"code": "PRCP"}]},
                "reference": {"identifier": {"system": PS_OID, "value": professional}},
            }
        ]
    if purpose:
        provision["purpose"] = [{"system": TRE_R248, "code": purpose}]
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": f"{patient_key}.{suffix}",
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient_key}"},
        "policyRule": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "OPTIN" if permit else "OPTOUT",
                }
            ]
        },
        "provision": provision,
    }
    if at is not None:
        resource["dateTime"] = iso(at)
    return resource


# -- the International Patient Summary (Patient/$summary) ---------------------------------

_SYSTEMS = {
    "2.16.840.1.113883.6.1": "http://loinc.org",
    "2.16.840.1.113883.6.96": "http://snomed.info/sct",
    "2.16.840.1.113883.6.3": "http://hl7.org/fhir/sid/icd-10",
    "2.16.840.1.113883.6.73": "http://www.whocc.no/atc",
}
# IPS section: (LOINC code, title, the resource a line becomes)
_IPS_SECTIONS = {
    "allergy": ("48765-2", "Allergies et intolérances", "AllergyIntolerance"),
    "treatment": ("10160-0", "Traitements en cours", "MedicationStatement"),
    "problem": ("11450-4", "Problèmes de santé en cours", "Condition"),
    "vaccination": ("11369-6", "Vaccinations", "Immunization"),
    "result": ("30954-2", "Derniers résultats", "Observation"),
}


def _concept(line: SummaryLine) -> dict[str, Any]:
    e = line.entry
    concept: dict[str, Any] = {"text": e.label}
    if e.code is not None:
        system = _SYSTEMS.get(e.code[0], f"urn:oid:{e.code[0]}")
        concept["coding"] = [{"system": system, "code": e.code[1], "display": e.label}]
    return concept


def _ips_resource(line: SummaryLine, patient: str, source: str) -> dict[str, Any]:
    e = line.entry
    kind = _IPS_SECTIONS[e.kind][2]
    res: dict[str, Any] = {"resourceType": kind, "meta": {"source": source}}
    active = {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/"
                + (
                    "allergyintolerance-clinical"
                    if kind == "AllergyIntolerance"
                    else "condition-clinical"
                ),
                "code": "active",
            }
        ]
    }
    if kind == "AllergyIntolerance":
        res |= {"clinicalStatus": active, "code": _concept(line), "patient": {"reference": patient}}
        if e.on:
            res["onsetDateTime"] = e.on
    elif kind == "Condition":
        res |= {"clinicalStatus": active, "code": _concept(line), "subject": {"reference": patient}}
        if e.on:
            res["onsetDateTime"] = e.on
    elif kind == "MedicationStatement":
        res |= {
            "status": "active",
            "medicationCodeableConcept": _concept(line),
            "subject": {"reference": patient},
        }
        if e.on:
            res["effectivePeriod"] = {"start": e.on}
    elif kind == "Immunization":
        res |= {
            "status": "completed",
            "vaccineCode": _concept(line),
            "patient": {"reference": patient},
        }
        if e.on:
            res["occurrenceDateTime"] = e.on
        else:
            res["occurrenceString"] = "date non précisée"
    else:
        res |= {
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "laboratory",
                        }
                    ]
                }
            ],
            "code": _concept(line),
            "subject": {"reference": patient},
            "valueString": e.detail,
        }
        if e.on:
            res["effectiveDateTime"] = e.on
    if e.detail and kind != "Observation":
        if kind == "MedicationStatement":
            res["dosage"] = [{"text": e.detail}]
        else:
            res["note"] = [{"text": e.detail}]
    return res


def _narrative(lines: list[str]) -> dict[str, str]:
    items = "".join(f"<li>{html.escape(text)}</li>" for text in lines)
    body = f"<ul>{items}</ul>" if items else "<p>Aucune information.</p>"
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'}


def patient_summary(
    summary: CareSummary, record: RecordView, patient_key: str, base: str, now: datetime
) -> dict[str, Any]:
    """An IPS document Bundle (Composition first, then the Patient and one resource per
    line, each naming its source document in meta.source)."""
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    device_url = f"urn:uuid:{uuid.uuid4()}"
    entries: list[dict[str, Any]] = [
        {"fullUrl": patient_url, "resource": patient(record, patient_key)},
        {
            "fullUrl": device_url,
            "resource": {
                "resourceType": "Device",
                "deviceName": [{"name": "dmp", "type": "user-friendly-name"}],
            },
        },
    ]
    sections = []
    for kind, (code, title, _) in _IPS_SECTIONS.items():
        refs, texts = [], []
        for line in summary.of(kind):
            url = f"urn:uuid:{uuid.uuid4()}"
            source = f"{base}/DocumentReference/{patient_key}.{line.sources[0]}"
            entries.append({"fullUrl": url, "resource": _ips_resource(line, patient_url, source)})
            refs.append({"reference": url})
            texts.append(
                line.entry.label + (f" — {line.entry.detail}" if line.entry.detail else "")
            )
        section: dict[str, Any] = {
            "title": title,
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "text": _narrative(texts),
        }
        if refs:
            section["entry"] = refs
        else:
            section["emptyReason"] = {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/list-empty-reason",
                        "code": "unavailable",
                    }
                ]
            }
        sections.append(section)
    composition = {
        "resourceType": "Composition",
        "status": "final",
        "type": {
            "coding": [
                {
                    "system": "http://loinc.org",
                    "code": "60591-5",
                    "display": "Patient summary Document",
                }
            ]
        },
        "subject": {"reference": patient_url},
        "date": iso(now),
        "author": [{"reference": device_url}],
        "title": "Synthèse de soins",
        "section": sections,
    }
    return {
        "resourceType": "Bundle",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "type": "document",
        "timestamp": iso(now),
        "entry": [{"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": composition}, *entries],
    }
