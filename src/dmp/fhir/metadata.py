"""The CapabilityStatement and the SMART Backend Services token endpoint."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from dmp import __version__
from dmp.access import smart
from dmp.access.smart import TokenEndpoint
from dmp.api.deps import token_endpoint
from dmp.errors import (
    InvalidInput,
    TooManyRequests,
)
from dmp.fhir import mapping
from dmp.fhir.common import base_url, fhir
from dmp.fhir.search import SUPPORTED as SEARCH_PARAMETERS

router = APIRouter()


Tokens = Annotated[TokenEndpoint, Depends(token_endpoint)]


@router.get("/metadata", name="fhir_metadata")
def metadata(request: Request) -> Response:
    return fhir(capability_statement(base_url(request)))


@router.post("/auth/token", name="fhir_token")
async def token(request: Request, endpoint: Tokens) -> JSONResponse:
    """SMART Backend Services token endpoint (client_credentials + private_key_jwt)."""
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
    try:
        answer = await run_in_threadpool(
            lambda: endpoint.exchange(
                grant_type=form.get("grant_type", ""),
                assertion_type=form.get("client_assertion_type", ""),
                assertion=form.get("client_assertion", ""),
                scope=form.get("scope", ""),
                token_url=str(request.url).split("?")[0],
                address=request.client.host if request.client else "unknown",
            )
        )
    except smart.InvalidClient as exc:
        return JSONResponse({"error": "invalid_client", "error_description": exc.message}, 401)
    except TooManyRequests as exc:
        return JSONResponse(
            {"error": "slow_down", "error_description": exc.message},
            429,
            headers={"Retry-After": str(exc.retry_after)},
        )
    except InvalidInput as exc:
        return JSONResponse(
            {"error": exc.reason or "invalid_request", "error_description": exc.message}, 400
        )
    return JSONResponse(
        {
            "access_token": answer.access_token,
            "token_type": "bearer",
            "expires_in": answer.expires_in,
            "scope": answer.scope,
        },
        headers={"Cache-Control": "no-store"},
    )


_PARAM_TYPES = {
    "patient": "reference",
    "author": "reference",
    "related": "reference",
    "relatesto": "reference",
    "date": "date",
    "creation": "date",
    "period": "date",
    "period-start": "date",
    "period-end": "date",
    "_count": "number",
    "_sort": "string",
}


def capability_statement(base: str) -> dict[str, Any]:
    docref_params = sorted(p for p in SEARCH_PARAMETERS if p not in ("_offset", "_format"))
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-26",
        "publisher": "dmp",
        "kind": "instance",
        "software": {"name": "dmp", "version": __version__},
        "implementation": {"description": "dmp shared medical record", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "instantiates": [
            "https://interop.esante.gouv.fr/ig/fhir/pdsm/CapabilityStatement/PDSm-GestionnaireDePartageDeDocuments"
        ],
        "implementationGuide": [
            "https://interop.esante.gouv.fr/ig/fhir/pdsm/ImplementationGuide/ans.fhir.fr.pdsm"
        ],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "extension": [
                        {
                            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                            "extension": [{"url": "token", "valueUri": f"{base}/auth/token"}],
                        }
                    ],
                    "description": "SMART Backend Services: client_credentials with "
                    "private_key_jwt (RS384, ES384)",
                },
                "interaction": [
                    {
                        "code": "transaction",
                        "documentation": "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-comprehensive-provide-document-bundle",
                    }
                ],
                "resource": [
                    {
                        "type": "DocumentReference",
                        "profile": mapping.PROFILE_DOCREF,
                        "interaction": [
                            {"code": c}
                            for c in (
                                "read",
                                "vread",
                                "history-instance",
                                "search-type",
                                "create",
                                "patch",
                                "delete",
                            )
                        ],
                        "versioning": "versioned",
                        "searchParam": [
                            {"name": n, "type": _PARAM_TYPES.get(n, "token")} for n in docref_params
                        ],
                    },
                    {
                        "type": "List",
                        "interaction": [{"code": "search-type"}],
                        "searchParam": [
                            {"name": n, "type": "token"}
                            for n in (
                                "patient",
                                "patient.identifier",
                                "code",
                                "status",
                                "identifier",
                            )
                        ],
                    },
                    {"type": "Binary", "interaction": [{"code": "read"}]},
                    {
                        "type": "Patient",
                        "interaction": [{"code": c} for c in ("read", "search-type", "create")],
                        "searchParam": [{"name": "identifier", "type": "token"}],
                    },
                    {
                        "type": "Consent",
                        "interaction": [{"code": c} for c in ("search-type", "create")],
                        "searchParam": [{"name": "patient", "type": "reference"}],
                    },
                    {
                        "type": "AuditEvent",
                        "interaction": [{"code": "search-type"}],
                        "searchParam": [{"name": "patient", "type": "reference"}],
                    },
                ],
            }
        ],
    }
