"""The FHIR R4 API (IHE MHD / French PDSm): one module per resource, all through the gate.

This module assembles their routers under ``/fhir``, in the order the routes were always
matched.
"""

from __future__ import annotations

from fastapi import APIRouter

from dmp.fhir import (
    audit_event,
    binary,
    consent,
    document_reference,
    lists,
    metadata,
    patient,
    transaction,
)

router = APIRouter(prefix="/fhir", tags=["fhir"])
for module in (metadata, patient, document_reference, binary):
    router.include_router(module.router)
# ITI-65 posts to the base itself, which an included router cannot name.
router.add_api_route("", transaction.transaction, methods=["POST"], name="fhir_transaction")
for module in (lists, audit_event, consent):
    router.include_router(module.router)
