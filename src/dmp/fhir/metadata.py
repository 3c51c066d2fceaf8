"""The CapabilityStatement, SMART discovery, and the token and revocation endpoints."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from dmp import __version__
from dmp.auth import smart
from dmp.auth.apps import AppServer, OAuthError
from dmp.auth.smart import TokenEndpoint
from dmp.errors import (
    InvalidInput,
    TooManyRequests,
)
from dmp.fhir.common import base_url, fhir
from dmp.fhir.lists import LIST_PARAMETERS
from dmp.fhir.search import DOCREF_PARAMETERS
from dmp.front import fhir_mapping as mapping
from dmp.front.deps import app_server, token_endpoint
from dmp.identity.scopes import APP_EXTRAS, APP_SCOPES, RESOURCES

router = APIRouter()


Tokens = Annotated[TokenEndpoint, Depends(token_endpoint)]
Apps = Annotated[AppServer, Depends(app_server)]


@router.get("/metadata", name="fhir_metadata")
def metadata(request: Request) -> Response:
    return fhir(capability_statement(base_url(request)))


@router.get("/.well-known/smart-configuration", name="fhir_smart_configuration")
def smart_configuration(request: Request) -> JSONResponse:
    """SMART App Launch discovery: the token endpoint of structures' software (Backend
    Services) and of the apps a holder allows (standalone patient launch, PKCE)."""
    base = base_url(request)
    site = base.removesuffix("/fhir")
    return JSONResponse(
        {
            "issuer": base,
            "authorization_endpoint": f"{site}/portail/autoriser",
            "token_endpoint": f"{base}/auth/token",
            "revocation_endpoint": f"{base}/auth/revoke",
            "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token"],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
            "token_endpoint_auth_signing_alg_values_supported": list(smart.ALGORITHMS),
            "scopes_supported": sorted(
                {
                    f"{c}/{r}.{v}"
                    for c in ("user", "system")
                    for r in (*RESOURCES, "*")
                    for v in ("cruds", "rs")
                }
                | set(APP_SCOPES)
                | set(APP_EXTRAS)
            ),
            "capabilities": [
                "client-confidential-asymmetric",
                "client-public",
                "launch-standalone",
                "context-standalone-patient",
                "permission-patient",
                "permission-offline",
                "permission-v2",
            ],
        },
        headers={"Cache-Control": "no-store"},
    )


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description},
        status,
        headers={"Cache-Control": "no-store"},
    )


@router.post("/auth/token", name="fhir_token")
async def token(request: Request, endpoint: Tokens, server: Apps) -> JSONResponse:
    """The token endpoint: a structure's software (client_credentials + private_key_jwt), or
    an app the holder allowed (authorization_code with PKCE, refresh_token)."""
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
    address = request.client.host if request.client else "unknown"
    if form.get("grant_type") in ("authorization_code", "refresh_token"):
        try:
            app = await run_in_threadpool(server.token, form, address)
        except OAuthError as exc:
            return _oauth_error(exc.error, exc.message, exc.status)
        except TooManyRequests as exc:
            return JSONResponse(
                {"error": "slow_down", "error_description": exc.message},
                429,
                headers={"Retry-After": str(exc.retry_after)},
            )
        body: dict[str, Any] = {
            "access_token": app.access_token,
            "token_type": "Bearer",
            "expires_in": app.expires_in,
            "scope": app.scope,
            "patient": app.patient,
        }
        if app.refresh_token:
            body["refresh_token"] = app.refresh_token
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
    try:
        answer = await run_in_threadpool(
            lambda: endpoint.exchange(
                grant_type=form.get("grant_type", ""),
                assertion_type=form.get("client_assertion_type", ""),
                assertion=form.get("client_assertion", ""),
                scope=form.get("scope", ""),
                token_url=str(request.url).split("?")[0],
                address=address,
            )
        )
    except smart.InvalidClient as exc:
        return _oauth_error("invalid_client", exc.message, 401)
    except TooManyRequests as exc:
        return JSONResponse(
            {"error": "slow_down", "error_description": exc.message},
            429,
            headers={"Retry-After": str(exc.retry_after)},
        )
    except InvalidInput as exc:
        return _oauth_error(exc.reason or "invalid_request", exc.message)
    return JSONResponse(
        {
            "access_token": answer.access_token,
            "token_type": "bearer",
            "expires_in": answer.expires_in,
            "scope": answer.scope,
        },
        headers={"Cache-Control": "no-store"},
    )


@router.post("/auth/revoke", name="fhir_token_revoke")
async def revoke(request: Request, server: Apps) -> Response:
    """RFC 7009: an app gives up its refresh token, which ends its authorization (200 for an
    unknown token too, as the RFC says)."""
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
    await run_in_threadpool(server.revoke, form)
    return Response(status_code=200, headers={"Cache-Control": "no-store"})


# Where each parameter is defined (the PDSm server role's CapabilityStatement).
_HL7 = "http://hl7.org/fhir/SearchParameter/"
_MHD = "https://profiles.ihe.net/ITI/MHD/SearchParameter/"
_PDSM = "https://interop.esante.gouv.fr/ig/fhir/pdsm/SearchParameter/"
_DEFINITIONS = {
    ("DocumentReference", "type"): _HL7 + "clinical-type",
    ("DocumentReference", "setting"): _HL7 + "DocumentReference-setting",
    ("DocumentReference", "identifier"): _HL7 + "clinical-identifier",
    ("DocumentReference", "creation"): _MHD + "DocumentReference-Creation",
    ("DocumentReference", "security-label"): _HL7 + "DocumentReference-security-label",
    ("DocumentReference", "status"): _HL7 + "DocumentReference-status",
    ("DocumentReference", "isArchived"): _PDSM + "PDSm-isArchived",
    ("DocumentReference", "period-start"): _PDSM + "PDSm-DocumentReference-period-start",
    ("DocumentReference", "period-end"): _PDSM + "PDSm-DocumentReference-period-end",
    ("DocumentReference", "format"): _HL7 + "DocumentReference-format",
    ("DocumentReference", "category"): _HL7 + "DocumentReference-category",
    ("DocumentReference", "relatesto"): _HL7 + "DocumentReference-relatesto",
    ("DocumentReference", "event"): _HL7 + "DocumentReference-event",
    ("DocumentReference", "period"): _HL7 + "DocumentReference-period",
    ("DocumentReference", "subject"): _HL7 + "DocumentReference-subject",
    ("DocumentReference", "patient"): _HL7 + "clinical-patient",
    ("DocumentReference", "author"): _HL7 + "DocumentReference-author",
    ("DocumentReference", "date"): _HL7 + "DocumentReference-date",
    ("DocumentReference", "facility"): _HL7 + "DocumentReference-facility",
    ("DocumentReference", "_id"): _HL7 + "Resource-id",
    ("List", "date"): _HL7 + "clinical-date",
    ("List", "designationType"): _MHD + "List-DesignationType",
    ("List", "identifier"): _HL7 + "clinical-identifier",
    ("List", "status"): _HL7 + "List-status",
    ("List", "isArchived"): _PDSM + "PDSm-isArchived",
    ("List", "title"): _HL7 + "List-title",
    ("List", "sourceId"): _MHD + "List-SourceId",
    ("List", "source"): _HL7 + "List-source",
    ("List", "authorOrg"): _PDSM + "PDSm-List-authorOrg",
    ("List", "code"): _HL7 + "clinical-code",
    ("List", "patient"): _HL7 + "clinical-patient",
    ("List", "subject"): _HL7 + "List-subject",
}


def _search_params(resource: str, declared: dict[str, str]) -> list[dict[str, str]]:
    out = []
    for name, kind in sorted(declared.items()):
        entry = {"name": name, "type": kind}
        if (resource, name) in _DEFINITIONS:
            entry["definition"] = _DEFINITIONS[(resource, name)]
        out.append(entry)
    out.append({"name": "_count", "type": "number"})
    out.append({"name": "_summary", "type": "token", "documentation": "count"})
    return out


def capability_statement(base: str) -> dict[str, Any]:
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
                            "extension": [
                                {"url": "token", "valueUri": f"{base}/auth/token"},
                                {
                                    "url": "authorize",
                                    "valueUri": f"{base.removesuffix('/fhir')}/portail/autoriser",
                                },
                                {"url": "revoke", "valueUri": f"{base}/auth/revoke"},
                            ],
                        }
                    ],
                    "description": "SMART Backend Services (client_credentials with "
                    "private_key_jwt, RS384 or ES384) for structures' software; SMART App "
                    "Launch (standalone patient launch, authorization code with PKCE) for the "
                    "apps a holder allows",
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
                        "searchParam": _search_params("DocumentReference", DOCREF_PARAMETERS),
                    },
                    {
                        "type": "List",
                        "supportedProfile": [
                            mapping.PDSM_SD + "pdsm-submissionset-comprehensive",
                            mapping.PDSM_SD + "pdsm-folder-comprehensive",
                        ],
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": _search_params("List", LIST_PARAMETERS),
                    },
                    {"type": "Binary", "interaction": [{"code": "read"}]},
                    {
                        "type": "Patient",
                        "interaction": [{"code": c} for c in ("read", "search-type", "create")],
                        "searchParam": [
                            {"name": "identifier", "type": "token"},
                            {"name": "_id", "type": "token", "definition": _HL7 + "Resource-id"},
                        ],
                        "operation": [
                            {
                                "name": "summary",
                                "definition": (
                                    "http://hl7.org/fhir/uv/ips/OperationDefinition/summary"
                                ),
                            }
                        ],
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
