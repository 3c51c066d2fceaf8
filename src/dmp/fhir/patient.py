"""Patient: find by INS, read, and create (opening a record with the patient's consent)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fhir.resources.R4B.patient import Patient as PatientModel

from dmp.access.views import Demographics
from dmp.api.deps import Gate
from dmp.domain.codes import CreationChannel
from dmp.domain.ins import INS_OIDS, Ins, PatientKey, parse_ins_token
from dmp.errors import (
    BadRequest,
    InvalidInput,
)
from dmp.fhir import mapping
from dmp.fhir.common import base_url, created, fhir, read_resource, validate_resource

router = APIRouter()


CONSENT_EXTENSION = "https://dmp.example.org/fhir/StructureDefinition/dmp-consentement-ouverture"


@router.get("/Patient", name="fhir_patient_search")
def patient_search(request: Request, access: Gate) -> Response:
    identifier = request.query_params.get("identifier")
    if not identifier:
        raise BadRequest("Patient search needs identifier=urn:oid:<INS OID>|<INS>")
    ins = parse_ins_token(identifier, test_mode=access.accepts_test_ins)
    base = base_url(request)
    view = access.find_record(ins)
    if view is None:
        return fhir(mapping.searchset([], 0, {"self": str(request.url)}))
    resource = mapping.patient(view, view.key)
    resource["_fullUrl"] = f"{base}/Patient/{view.key}"
    return fhir(mapping.searchset([resource], 1, {"self": str(request.url)}))


@router.get("/Patient/{key}", name="fhir_patient_read")
def patient_read(key: str, access: Gate) -> Response:
    view = access.read_record(PatientKey(key))
    return fhir(mapping.patient(view, view.key))


@router.post("/Patient", name="fhir_patient_create")
async def patient_create(request: Request, access: Gate) -> Response:
    """Open a record. The patient's consent is stated with the extension
    ``dmp-consentement-ouverture`` (valueBoolean true)."""
    res = await read_resource(request, "Patient")
    validate_resource(PatientModel, res, "Patient")
    ins = None
    for ident in res.get("identifier") or []:
        system = str(ident.get("system", ""))
        if system.removeprefix("urn:oid:") in INS_OIDS:
            ins = Ins(system.removeprefix("urn:oid:"), str(ident.get("value", "")))
    if ins is None:
        raise InvalidInput(
            "Patient.identifier must hold an INS (urn:oid: and one of "
            + ", ".join(sorted(INS_OIDS))
            + ")"
        )
    consent = any(
        e.get("url") == CONSENT_EXTENSION and e.get("valueBoolean") is True
        for e in res.get("extension") or []
    )
    names = res.get("name") or [{}]
    official = next((n for n in names if n.get("use") == "official"), names[0])
    address = (res.get("address") or [{}])[0]
    commune = (
        str(address.get("extension", [{}])[0].get("valueString", ""))
        if address.get("extension")
        else str(address.get("postalCode", ""))
    )
    try:
        birth = datetime.fromisoformat(str(res.get("birthDate"))).date()
    except ValueError:
        raise InvalidInput("Patient.birthDate is required (YYYY-MM-DD)") from None
    demo = Demographics(
        birth_family_name=str(official.get("family", "")),
        given_names=" ".join(official.get("given") or []),
        sex={"male": "M", "female": "F"}.get(str(res.get("gender")), "U"),
        birth_date=birth,
        residence_commune=commune.upper(),
    )
    view = await run_in_threadpool(
        access.open_record, ins, demo, channel=CreationChannel.PROFESSIONAL, patient_consent=consent
    )
    return created(
        request,
        mapping.patient(view, view.key),
        f"{base_url(request)}/Patient/{view.key}/_history/1",
    )
