"""Consent: the holder's decisions, and a professional's declaration of the patient's consent."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from dmp.errors import (
    Forbidden,
    InvalidInput,
)
from dmp.fhir.common import (
    base_url,
    checked_params,
    created,
    fhir,
    patient_param,
    read_resource,
)
from dmp.front import fhir_mapping as mapping
from dmp.front.deps import Gate

router = APIRouter()


@router.get("/Consent", name="fhir_consent_search")
def consent_search(request: Request, access: Gate) -> Response:
    """The holder's authorisations and blocks of professionals, as Consent resources."""
    checked_params(request, {"patient": "reference", "patient.identifier": "token"})
    patient = patient_param(request, access)
    rows = access.permissions(patient)
    record = access.read_record(patient)
    key = record.key
    # The holder's oppositions to emergency and regulation-centre access (AC-8, AC-9), then
    # the decisions about professionals (authorised, blocked).
    resources = [
        mapping.consent(key, f"opposition-{mode.replace('_', '-')}", permit=False, purpose=mode)
        for opposed, mode in (
            (record.oppose_bris_de_glace, "bris_de_glace"),
            (record.oppose_centre_15, "centre_15"),
        )
        if opposed
    ]
    resources += [
        mapping.consent(key, ps, permit=blocked is None, professional=ps, at=blocked or consented)
        for ps, consented, blocked in rows
    ]
    return fhir(mapping.searchset(resources, len(resources), {"self": str(request.url)}))


@router.post("/Consent", name="fhir_consent_create")
async def consent_create(request: Request, access: Gate) -> Response:
    """A professional declares the consent the patient gave them (provision permit)."""
    res = await read_resource(request, "Consent")
    for element in ("patient", "provision"):
        if not isinstance(res.get(element) or {}, dict):
            raise InvalidInput(f"Consent.{element} must be an object")
    ref = (res.get("patient") or {}).get("reference")
    if not ref or not isinstance(ref, str):
        raise InvalidInput("Consent.patient.reference is required (a string)")
    patient = mapping.patient_ref(ref, test_mode=access.accepts_test_ins)
    provision = res.get("provision") or {}
    if provision.get("type", "permit") != "permit":
        raise Forbidden("a professional declares consents; blocks are the patient's decision")
    key = await run_in_threadpool(access.declare_consent, patient)
    ps = access.actor.id
    resource = mapping.consent(key, ps, permit=True, professional=ps, at=access.now())
    return created(request, resource, f"{base_url(request)}/Consent/{key}.{ps}")
