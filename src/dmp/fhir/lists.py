"""List: ITI-66 Find Lists (SubmissionSets and Folders, showing only what the caller may see)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from dmp.api.deps import Gate
from dmp.errors import (
    BadRequest,
)
from dmp.fhir import mapping
from dmp.fhir.common import base_url, fhir, patient_param

router = APIRouter()


@router.get("/List", name="fhir_list_search")
def list_search(request: Request, access: Gate) -> Response:
    """ITI-66 Find Lists: SubmissionSets (code=submissionset) and Folders (code=folder)."""
    params = request.query_params
    unknown = set(params) - {
        "patient",
        "patient.identifier",
        "code",
        "status",
        "identifier",
        "_count",
    }
    if unknown:
        raise BadRequest(f"unsupported search parameters: {', '.join(sorted(unknown))}")
    patient = patient_param(request, access)
    code = (params.get("code") or "").split("|")[-1] or None
    if code not in (None, "submissionset", "folder"):
        raise BadRequest("code is submissionset or folder")
    if params.get("status") not in (None, "current"):
        return fhir(mapping.searchset([], 0, {"self": str(request.url)}))
    wanted = (params.get("identifier") or "").split("|")[-1] or None
    base = base_url(request)
    found = [
        lst
        for lst in access.search_lists(patient, code)
        if wanted is None or wanted in (lst.unique_id, lst.id)
    ]
    resources = []
    for lst in found:
        r = mapping.list_resource(lst)
        r["_fullUrl"] = f"{base}/List/{r['id']}"
        resources.append(r)
    return fhir(mapping.searchset(resources, len(resources), {"self": str(request.url)}))
