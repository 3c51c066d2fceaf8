"""Patient: find by INS, read, and create (opening a record with the patient's consent)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fhir.resources.R4B.patient import Patient as PatientModel

from dmp.access.views import Demographics
from dmp.domain.codes import CreationChannel
from dmp.domain.geo import commune_of_postcode, departement_of_commune
from dmp.domain.ins import INS_OIDS, Ins, PatientKey, PatientRef
from dmp.errors import (
    BadRequest,
    InvalidInput,
)
from dmp.fhir import params
from dmp.fhir.common import (
    NO_SYSTEM,
    base_url,
    checked_params,
    created,
    fhir,
    ins_param,
    read_resource,
    validate_resource,
)
from dmp.fhir.outcome import operation_outcome
from dmp.front import assumed
from dmp.front import fhir_mapping as mapping
from dmp.front.deps import Gate

router = APIRouter()


CONSENT_EXTENSION = "https://dmp.example.org/fhir/StructureDefinition/dmp-consentement-ouverture"


INSEE_EXTENSION = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code"


def validation_mode(res: dict[str, Any]) -> str | None:
    """The identity document the sender checked: FR Core's identity-reliability extension,
    its ``validationMode`` (a high-trust document qualifies the identity)."""
    for n, ext in enumerate(res.get("extension") or []):
        if not isinstance(ext, dict) or ext.get("url") != mapping.IDENTITY_RELIABILITY:
            continue
        for part in ext.get("extension") or []:
            if isinstance(part, dict) and part.get("url") == "validationMode":
                code = (part.get("valueCoding") or {}).get("code")
                if not isinstance(code, str) or not code:
                    where = f"Patient.extension[{n}].validationMode"
                    raise InvalidInput(f"{where}: a valueCoding with a code", reason=where)
                return code
    return None


def residence_commune(addresses: list[Any]) -> str:
    """The INSEE code of the commune of residence: the FR Core extension on the address
    (``valueCoding.code``, or ``valueString``), else the postal code (with ``city`` when it
    serves several communes), mapped with the postal-code table (dmp.domain.geo)."""
    if not addresses:
        raise InvalidInput(
            "Patient.address is required: the commune of residence (INSEE code in the FR Core "
            "extension fr-core-address-insee-code, or postalCode and city)",
            reason="Patient.address",
        )
    for n, address in enumerate(addresses):
        if not isinstance(address, dict):
            continue
        where = f"Patient.address[{n}]"
        for m, ext in enumerate(address.get("extension") or []):
            if isinstance(ext, dict) and ext.get("url") == INSEE_EXTENSION:
                code = (ext.get("valueCoding") or {}).get("code") or ext.get("valueString")
                element = f"{where}.extension[{m}]"
                if not isinstance(code, str):
                    raise InvalidInput(f"{element}: the INSEE code is missing", reason=element)
                try:
                    departement_of_commune(code)
                except InvalidInput as exc:
                    raise InvalidInput(f"{element}: {exc.message}", reason=element) from None
                return code.upper()
        postal = address.get("postalCode")
        if isinstance(postal, str) and postal.strip():
            return commune_of_postcode(postal, address.get("city"), where=where)
    raise InvalidInput(
        "Patient.address[0]: give the INSEE code (FR Core extension fr-core-address-insee-code) "
        "or the postal code",
        reason="Patient.address[0]",
    )


@router.get("/Patient", name="fhir_patient_search")
def patient_search(request: Request, access: Gate) -> Response:
    applied = checked_params(request, {"identifier": "token", "_id": "token"})
    params.total_mode(applied)
    identifier = request.query_params.get("identifier")
    keys = params.values(applied, "_id")
    if not identifier and not keys:
        raise BadRequest("Patient search needs identifier=urn:oid:<INS OID>|<INS> (or _id)")
    if len(keys) > 1:
        raise BadRequest("_id: one patient per search")
    ref: PatientRef = (
        ins_param(identifier, test_mode=access.accepts_test_ins)
        if identifier
        else PatientKey(keys[0])
    )
    base = base_url(request)
    view = access.find_record(ref)
    if view is not None and keys and view.key != keys[0]:
        view = None  # identifier and _id name two patients
    links = {"self": str(request.url)}
    if view is None:
        bundle = mapping.searchset([], 0, links)
        if identifier and "|" not in identifier:
            # A searchset may carry an OperationOutcome (search.mode outcome): say which OID
            # the bare INS was looked up under.
            bundle["entry"] = [_assumed_oid_outcome()]
        return fhir(bundle)
    resource = mapping.patient(view, view.key)
    resource["_fullUrl"] = f"{base}/Patient/{view.key}"
    count = params.first(applied, "_count")
    if count is not None and count.strip() == "0":
        return fhir(mapping.searchset([], 1, links))
    return fhir(mapping.searchset([resource], 1, links))


def _assumed_oid_outcome() -> dict[str, Any]:
    outcome = operation_outcome(
        200,
        f"no record was found for this patient: {assumed.assumed_nir(NO_SYSTEM)}",
        code="not-found",
        severity="warning",
    )
    return {"resource": outcome, "search": {"mode": "outcome"}}


@router.get("/Patient/{key}", name="fhir_patient_read")
def patient_read(key: str, access: Gate) -> Response:
    view = access.read_record(PatientKey(key))
    return fhir(mapping.patient(view, view.key))


@router.get("/Patient/{key}/$summary", name="fhir_patient_summary")
def patient_summary(key: str, request: Request, access: Gate) -> Response:
    """IPS ``$summary``: the summary of care as a document Bundle, built from the documents
    this reader may see (the record's identity first, then the summary: two traces)."""
    checked_params(request, {})
    view = access.read_record(PatientKey(key))
    summary = access.care_summary(PatientKey(key))
    return fhir(mapping.patient_summary(summary, view, view.key, base_url(request), access.now()))


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
    commune = residence_commune(res.get("address") or [])
    try:
        birth = datetime.fromisoformat(str(res.get("birthDate"))).date()
    except ValueError:
        raise InvalidInput("Patient.birthDate is required (YYYY-MM-DD)") from None
    demo = Demographics(
        birth_family_name=str(official.get("family", "")),
        given_names=" ".join(str(g) for g in official.get("given") or []),
        sex={"male": "M", "female": "F"}.get(str(res.get("gender")), "U"),
        birth_date=birth,
        residence_commune=commune,
    )
    view = await run_in_threadpool(
        access.open_record,
        ins,
        demo,
        channel=CreationChannel.PROFESSIONAL,
        patient_consent=consent,
        identity_document=validation_mode(res),
    )
    return created(
        request,
        mapping.patient(view, view.key),
        f"{base_url(request)}/Patient/{view.key}/_history/1",
    )
