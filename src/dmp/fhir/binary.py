"""Binary: ITI-68 Retrieve Document (streamed raw bytes, or a FHIR Binary)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from dmp.fhir.common import doc_ref, fhir, version_headers
from dmp.front import fhir_mapping as mapping
from dmp.front.content import content_response
from dmp.front.deps import Gate

router = APIRouter()


@router.get("/Binary/{fhir_id}", name="fhir_binary_read")
def binary_read(
    fhir_id: str,
    request: Request,
    access: Gate,
) -> Response:
    key, logical = doc_ref(fhir_id)
    accept = request.headers.get("accept", "")
    as_fhir = request.query_params.get("_format") in ("json", "application/fhir+json")
    if "fhir+json" in accept or as_fhir:
        doc, content = access.read_content(key, logical)
        return fhir(mapping.binary(doc, content), headers=version_headers(doc))
    doc, chunks = access.stream_content(key, logical)
    response = content_response(doc, chunks, attachment=True)
    response.headers.update(version_headers(doc))
    return response
