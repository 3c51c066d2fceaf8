"""OperationOutcome: every FHIR error, with its HTTP status."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

FHIR_JSON = "application/fhir+json"
# XDS RegistryError codes MHD names (ITI TF-3 4.2.4.1), carried in issue.details (code and
# text; IHE publishes no FHIR code system for them).
MHD_ERROR_CODES = frozenset({"FHIRDocumentNotSupported", "UnknownRecipient"})

_ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "processing",
    500: "exception",
}


def operation_outcome(
    status: int,
    diagnostics: str,
    *,
    code: str | None = None,
    expression: str | None = None,
    severity: str = "error",
    details: str | None = None,
) -> dict[str, Any]:
    issue: dict[str, Any] = {
        "severity": severity,
        "code": code or _ISSUE_CODES.get(status, "exception"),
        "diagnostics": diagnostics,
    }
    if details:  # an IHE error code (MHD / XDS RegistryError), e.g. FHIRDocumentNotSupported
        issue["details"] = {"coding": [{"code": details}], "text": details}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def outcome_response(status: int, diagnostics: str, **kw: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        operation_outcome(status, diagnostics, **kw), status, headers=headers, media_type=FHIR_JSON
    )
