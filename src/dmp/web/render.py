"""Rendering pages: one Jinja2 environment (autoescape on), the security headers every portal
response carries, and errors as readable French pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from dmp.domain.codes import IDENTITY_DOCUMENTS, IDENTITY_STATUS_LABELS
from dmp.errors import DmpError
from dmp.web import labels

_env = Environment(
    loader=PackageLoader("dmp.web", "templates"),
    autoescape=select_autoescape(["html", "svg"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(
    date_fr=labels.date_fr,
    datetime_fr=labels.datetime_fr,
    type_label=labels.type_label,
    partial_date=labels.partial_date,
)


def page_url(base: str, filters: dict[str, str] | None, number: int) -> str:
    """A list page's address with its filters (never patient data: codes and dates only)."""
    query = {k: v for k, v in (filters or {}).items() if v}
    query["p"] = str(number)
    return f"{base}?{urlencode(query)}"


_env.globals.update(
    labels=labels,
    page_url=page_url,
    identity_labels=IDENTITY_STATUS_LABELS,
    identity_documents=IDENTITY_DOCUMENTS,
)

# No inline script or style anywhere: the CSP forbids both, and nothing comes from elsewhere.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

SESSION_COOKIE = "dmp_session"
PRE_COOKIE = "dmp_pre"  # the CSRF token of the forms shown before login
# An app's authorization request waiting for the holder to log in (path and query only).
RESUME_COOKIE = "dmp_suite"
DEVICE_COOKIE = "dmp_appareil"  # a device the account already logged in from


def page(
    request: Request,
    template: str,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    html = _env.get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=status, headers=headers)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def error_page(request: Request, exc: DmpError) -> Response:
    """A DmpError on a portal page: a French page with the right status (401 goes to login)."""
    if exc.status == 401 and request.method == "GET":
        return redirect("/portail/connexion")
    headers = None
    retry = getattr(exc, "retry_after", None)
    if retry is not None:
        headers = {"Retry-After": str(retry)}
    return page(
        request,
        "erreur.html",
        status=exc.status,
        headers=headers,
        message=french_message(exc),
        session=getattr(request.state, "portal_session", None),
    )


_REASONS = {
    "DENY_UNKNOWN_PATIENT": "Aucun dossier n'a été trouvé pour ce patient.",
    "DENY_NOT_HOLDER": "Aucun dossier n'a été trouvé pour ce patient.",
    "DENY_RECORD_EXISTS": "Ce patient a déjà un dossier médical partagé.",
    "DENY_RECORD_CLOSED": "Le dossier est fermé.",
    "DENY_BLOCKED": "Le patient a bloqué votre accès à son dossier.",
    "DENY_NO_CONSENT": (
        "Le consentement du patient à votre accès n'a pas été déclaré. Demandez-le au patient, "
        "puis déclarez-le ci-dessous."
    ),
    "DENY_ACTOR_KIND": "Votre profil ne permet pas cette action.",
    "DENY_NO_STRUCTURE": "Vous devez agir pour le compte d'une structure.",
    "DENY_FORBIDDEN_ACTOR": "Votre profil ne peut jamais accéder à un dossier médical partagé.",
    "DENY_OPPOSED_EMERGENCY": "Le patient s'est opposé à l'accès en urgence à son dossier.",
    "DENY_OPPOSED_CENTRE_15": "Le patient s'est opposé à l'accès par le centre de régulation.",
    "DENY_JUSTIFICATION_REQUIRED": "Un accès en urgence doit être justifié.",
    "DENY_NOT_AUTHOR": "Seul l'auteur du document ou sa structure peut le modifier.",
    "DENY_NOT_FOUND": "Ce document n'existe pas ou ne vous est pas accessible.",
    "DENY_SUBJECT_BLOCKED": (
        "Ce professionnel est bloqué par le titulaire du dossier : il doit d'abord être débloqué."
    ),
    "DENY_ACCOUNT_ACTIVE": (
        "Le compte en ligne du titulaire est déjà activé : aucune lettre n'est imprimée. "
        "Lancez une récupération : le code est envoyé au titulaire lui-même."
    ),
    "DENY_ACCOUNT_NOT_ACTIVE": (
        "Le compte en ligne du titulaire n'a jamais été activé : imprimez la lettre d'activation."
    ),
    "DENY_DELETION_PENDING": (
        "Le titulaire a demandé la suppression de ce dossier : seul le titulaire (ou son "
        "représentant légal) peut retirer cette demande ; le dossier n'est pas rouvert entre-temps."
    ),
    "DENY_OTHER_PATIENT": "Votre accès en cours concerne un autre patient.",
    "DENY_APP_WITHDRAWN": "L'autorisation donnée à cette application a été retirée.",
}
_STATUS = {
    400: "La demande est incorrecte.",
    401: "Votre session a expiré : reconnectez-vous.",
    403: "Cette action ne vous est pas permise.",
    404: "Ce que vous cherchez n'existe pas ou ne vous est pas accessible.",
    409: "Cette action est en conflit avec l'état actuel du dossier.",
    412: "Le document a changé entre-temps : rechargez la page.",
    413: "Le fichier envoyé est trop volumineux.",
    422: "La saisie est incorrecte.",
    429: "Trop de tentatives : réessayez dans quelques minutes.",
    503: "Le service est momentanément indisponible : réessayez dans quelques instants.",
}


def french_message(exc: DmpError) -> str:
    """What the person reads. Messages the portal wrote in French are shown as they are;
    reasons of the gate have their French wording; other messages (in English, from the shared
    rules) are shown after a French summary of the status."""
    if exc.french:
        return exc.french[0].upper() + exc.french[1:]
    if exc.reason and exc.reason in _REASONS:
        return _REASONS[exc.reason]
    if _looks_french(exc.message):
        return exc.message[0].upper() + exc.message[1:]
    summary = _STATUS.get(exc.status, "Une erreur est survenue.")
    if exc.status in (400, 413, 422):  # what was wrong with the input: worth the detail
        return f"{summary} (Détail : {exc.message}.)"
    return summary


def _looks_french(text: str) -> bool:
    return any(ch in text for ch in "éèàçêù") or text.startswith(("le ", "la ", "les ", "ce"))
