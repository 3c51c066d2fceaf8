"""The holder's and the legal representative's pages: the record, its documents, the health
profile, the professionals, the access history, preferences, export and closure."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from dmp.access.kernel import MAX_PAGE
from dmp.access.views import DocumentView, NewDocument
from dmp.domain import alerts
from dmp.domain.codes import TYPE_LABELS
from dmp.domain.ins import Ins, spaced_ins
from dmp.domain.narrative import cda_narrative_html
from dmp.domain.profile import PROFILE, PROFILE_PREFIX, profile_text
from dmp.domain.profile import document as profile_document
from dmp.errors import InvalidInput, NotFound
from dmp.front import fhir_mapping as mapping
from dmp.front.explain import explain
from dmp.identity.actor import ActorKind
from dmp.web import labels, pdf
from dmp.web.auth import Text
from dmp.web.deps import Page, PageDep, PostDep, require
from dmp.web.render import page, redirect

router = APIRouter(prefix="/portail/dossier", include_in_schema=False)

HOLDER_SIDE = (ActorKind.PATIENT, ActorKind.REPRESENTATIVE)
PER_PAGE = 10
TEXT_FORMAT = "urn:ihe:iti:xds-sd:text:2008"

# The health profile: each part is a document the patient authors (DOCPAT08 "Profil médical",
# EXPPAT_1 "Volontés et droits du patient", EXPPAT_3 "Directives anticipées").


def _holder(pg: Page) -> Ins:
    require(pg, *HOLDER_SIDE)
    ins = pg.current_patient()
    assert ins is not None
    return ins


def _day(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.combine(date.fromisoformat(value), time.min, UTC)
    except ValueError:
        raise InvalidInput(f"la date « {name} » doit être au format AAAA-MM-JJ") from None


def _page_number(value: int) -> int:
    if not 1 <= value <= 10_000:
        raise InvalidInput("numéro de page incorrect")
    return value


@router.get("", name="record_home", response_class=HTMLResponse)
def record_home(request: Request, pg: PageDep) -> Response:
    ins = _holder(pg)
    record = pg.gate.read_record(ins)
    return page(request, "dossier.html", session=pg.session, record=record, pg=pg)


@router.get("/documents", name="record_documents", response_class=HTMLResponse)
def documents(
    request: Request,
    pg: PageDep,
    type_: Annotated[str, Query(alias="type", max_length=20)] = "",
    depuis: Annotated[str, Query(max_length=10)] = "",
    jusqua: Annotated[str, Query(max_length=10)] = "",
    auteur: Annotated[str, Query(max_length=32)] = "",
    p: Annotated[int, Query()] = 1,
) -> Response:
    ins = _holder(pg)
    p = _page_number(p)
    since, until = _day(depuis, "depuis"), _day(jusqua, "jusqu'au")
    from dmp.access.views import SearchCriteria

    found = pg.gate.search_documents(
        ins,
        type_codes=(type_,) if type_ else None,
        statuses=("current",),
        service_from=since,
        service_to=until + timedelta(days=1) if until else None,
        limit=PER_PAGE,
        offset=(p - 1) * PER_PAGE,
        criteria=SearchCriteria(author_ids=(auteur,)) if auteur else None,
    )
    authors = pg.portal.people({d.author_id for d in found.items})
    return page(
        request,
        "documents.html",
        session=pg.session,
        docs=found.items,
        total=found.total,
        p=p,
        pages=max(1, math.ceil(found.total / PER_PAGE)),
        authors=authors,
        types=sorted(TYPE_LABELS.items(), key=lambda kv: kv[1]),
        filters={"type": type_, "depuis": depuis, "jusqua": jusqua, "auteur": auteur},
        base="/portail/dossier/documents",
    )


def _viewable(doc: DocumentView, content: bytes) -> dict[str, Any]:
    """How the page shows a document: CDA narrative (sanitized), text, or a link."""
    if doc.mime_type in ("text/xml", "application/xml"):
        html = cda_narrative_html(content)
        if html is not None:
            return {"html": html}
    if doc.mime_type == "text/plain":
        return {"text": content.decode("utf-8", errors="replace")}
    if doc.mime_type == "application/pdf":
        return {"pdf": True}
    return {"download": True}


@router.get("/documents/{doc_id}", name="record_document", response_class=HTMLResponse)
def document(request: Request, pg: PageDep, doc_id: str) -> Response:
    ins = _holder(pg)
    doc, content = pg.gate.read_content(ins, _doc_id(doc_id))
    authors = pg.portal.people({doc.author_id})
    return page(
        request,
        "document.html",
        session=pg.session,
        doc=doc,
        view=_viewable(doc, content),
        authors=authors,
        base="/portail/dossier/documents",
        may_mask=True,
    )


@router.get("/documents/{doc_id}/contenu", name="record_document_content")
def document_content(pg: PageDep, doc_id: str) -> Response:
    ins = _holder(pg)
    doc, content = pg.gate.read_content(ins, _doc_id(doc_id))
    return content_response(doc, content)


def content_response(doc: DocumentView, content: bytes) -> Response:
    """The stored bytes, with the stored MIME type: a PDF shown inline, the rest downloaded."""
    inline = doc.mime_type == "application/pdf"
    name = "document.pdf" if inline else "document"
    # A PDF opens in the browser's viewer (which a sandboxed response would block); anything
    # else is a download, sandboxed should a browser render it anyway.
    csp = "frame-ancestors 'none'" if inline else "default-src 'none'; sandbox"
    return Response(
        content,
        media_type=doc.mime_type,
        headers={
            "Content-Disposition": f'{"inline" if inline else "attachment"}; filename="{name}"',
            "Content-Security-Policy": csp,
        },
    )


def _doc_id(value: str) -> str:
    if not value.isalnum() or len(value) > 64:
        raise NotFound("no such document")
    return value


@router.post("/documents/{doc_id}/masquage", name="record_document_mask")
def mask(pg: PostDep, doc_id: str, masquer: Text = "") -> Response:
    ins = _holder(pg)
    if masquer not in ("oui", "non"):
        raise InvalidInput("choisissez de masquer ou de démasquer le document")
    pg.gate.update_document(ins, _doc_id(doc_id), masked_ps=masquer == "oui")
    return redirect(f"/portail/dossier/documents/{doc_id}?fait=masquage")


# -- health profile -----------------------------------------------------------------------


def _profile_docs(pg: Page, ins: Ins) -> dict[str, DocumentView]:
    found = pg.gate.search_documents(
        ins,
        type_codes=tuple(sorted({t for _, _, t in PROFILE})),
        limit=100,
    )
    by_title = {d.title: d for d in found.items if d.author_kind == "patient"}
    return {
        key: by_title[PROFILE_PREFIX + label]
        for key, label, _ in PROFILE
        if PROFILE_PREFIX + label in by_title
    }


@router.get("/profil", name="record_profile", response_class=HTMLResponse)
def profile(request: Request, pg: PageDep) -> Response:
    ins = _holder(pg)
    docs = _profile_docs(pg, ins)
    texts: dict[str, str] = {}
    for key, doc in docs.items():
        _, content = pg.gate.read_content(ins, doc.logical_id)
        texts[key] = profile_text(content)
    return page(request, "profil.html", session=pg.session, parts=PROFILE, texts=texts, docs=docs)


@router.post("/profil", name="record_profile_post")
def profile_save(pg: PostDep, partie: Text = "", texte: Text = "") -> Response:
    ins = _holder(pg)
    part = next((p for p in PROFILE if p[0] == partie), None)
    if part is None:
        raise InvalidInput("partie du profil inconnue")
    texte = texte.strip()
    if not texte or len(texte) > 10_000:
        raise InvalidInput("saisissez un texte (10 000 caractères au plus)")
    key, label, type_code = part
    now = pg.gate.now()
    current = _profile_docs(pg, ins).get(key)
    who = "le patient" if pg.kind is ActorKind.PATIENT else "son représentant légal"
    body = profile_document(label, who, labels.date_fr(now), texte)
    pg.gate.deposit_document(
        ins,
        NewDocument(
            type_code=type_code,
            format_code=TEXT_FORMAT,
            mime_type="text/plain",
            title=PROFILE_PREFIX + label,
            creation_time=now,
            service_start=now,
        ),
        body.encode(),
        replaces=current.logical_id if current else None,
    )
    return redirect(f"/portail/dossier/profil?fait={key}#{key}")


# -- professionals ------------------------------------------------------------------------


@router.get("/professionnels", name="record_professionals", response_class=HTMLResponse)
def professionals(request: Request, pg: PageDep) -> Response:
    ins = _holder(pg)
    record = pg.gate.read_record(ins)
    perms = pg.gate.permissions(ins)
    team = pg.gate.care_team(ins)
    ids = {ps for ps, _, _ in perms} | {ps for ps, _, _ in team}
    if record.medecin_traitant:
        ids.add(record.medecin_traitant)
    return page(
        request,
        "professionnels.html",
        session=pg.session,
        record=record,
        perms=perms,
        team=team,
        people=pg.portal.people(ids),
    )


def _ps(value: str) -> str:
    value = value.strip()
    if not value.isalnum() or not 1 <= len(value) <= 32:
        raise InvalidInput("saisissez l'identifiant national (RPPS/ADELI) du professionnel")
    return value


@router.post("/professionnels/blocage", name="record_block")
def block(pg: PostDep, professionnel: Text = "", bloquer: Text = "oui") -> Response:
    ins = _holder(pg)
    if bloquer == "oui":
        pg.gate.block_professional(ins, _ps(professionnel))
    else:
        pg.gate.unblock_professional(ins, _ps(professionnel))
    return redirect("/portail/dossier/professionnels?fait=blocage")


@router.post("/professionnels/autorisation", name="record_authorise")
def authorise(pg: PostDep, professionnel: Text = "") -> Response:
    ins = _holder(pg)
    pg.gate.declare_consent(ins, _ps(professionnel))
    return redirect("/portail/dossier/professionnels?fait=autorisation")


@router.post("/professionnels/oppositions", name="record_oppositions")
def oppositions(pg: PostDep, urgence: Text = "", centre15: Text = "") -> Response:
    ins = _holder(pg)
    pg.gate.update_settings(
        ins, oppose_bris_de_glace=urgence == "oui", oppose_centre_15=centre15 == "oui"
    )
    return redirect("/portail/dossier/professionnels?fait=oppositions")


@router.post("/professionnels/medecin-traitant", name="record_gp")
def gp(pg: PostDep, professionnel: Text = "") -> Response:
    ins = _holder(pg)
    if professionnel.strip():
        pg.gate.update_settings(ins, medecin_traitant=_ps(professionnel))
    else:
        pg.gate.update_settings(ins, clear_medecin_traitant=True)
    return redirect("/portail/dossier/professionnels?fait=medecin")


# -- summary of care ----------------------------------------------------------------------


def summary_page(request: Request, pg: Page, ins: Ins, *, holder_side: bool) -> Response:
    """The summary of care as this reader may see it, each line linked to its documents on
    the reader's own document pages."""
    return page(
        request,
        "synthese.html",
        session=pg.session,
        summary=pg.gate.care_summary(ins),
        sections=labels.SUMMARY_SECTIONS,
        document_base="/portail/dossier/documents" if holder_side else "/portail/pro/documents",
        holder_side=holder_side,
        who=None if holder_side else f"INS {spaced_ins(ins.value)}",
    )


@router.get("/synthese", name="record_summary", response_class=HTMLResponse)
def care_summary(request: Request, pg: PageDep) -> Response:
    return summary_page(request, pg, _holder(pg), holder_side=True)


# -- history ------------------------------------------------------------------------------

# The default view answers the holder's question, "who else saw my record?": the holder's and
# the representatives' own actions sit behind a filter.
_WHO: dict[str, tuple[str, ...] | None] = {
    "": ("professional", "desk_agent", "system"),
    "professionnels": ("professional",),
    "moi": ("patient", "representative"),
    "autres": ("desk_agent", "system"),
    "tout": None,
}


@router.get("/historique", name="record_history", response_class=HTMLResponse)
def history(
    request: Request,
    pg: PageDep,
    qui: Annotated[str, Query(max_length=20)] = "",
    mode: Annotated[str, Query(max_length=20)] = "",
    depuis: Annotated[str, Query(max_length=10)] = "",
    jusqua: Annotated[str, Query(max_length=10)] = "",
    p: Annotated[int, Query()] = 1,
) -> Response:
    ins = _holder(pg)
    p = _page_number(p)
    if qui not in _WHO:
        raise InvalidInput("Le filtre « Qui » est inconnu : choisissez une valeur de la liste.")
    if mode and mode not in labels.PURPOSES:
        raise InvalidInput("Le mode d'accès est inconnu : choisissez une valeur de la liste.")
    until = _day(jusqua, "jusqu'au")
    traces = pg.gate.history(
        ins,
        limit=20,
        offset=(p - 1) * 20,
        actor_kinds=_WHO[qui],
        purposes=(mode,) if mode else None,
        since=_day(depuis, "depuis"),
        until=until + timedelta(days=1) if until else None,
    )
    people = pg.portal.people({t.actor_id for t in traces.items if t.actor_kind == "professional"})
    structures = pg.portal.structure_names({t.structure_id for t in traces.items if t.structure_id})
    software = pg.portal.software_names({t.client_id for t in traces.items if t.client_id})
    return page(
        request,
        "historique.html",
        software=software,
        session=pg.session,
        traces=[(t, explain(t)) for t in traces.items],
        total=traces.total,
        p=p,
        pages=max(1, math.ceil(traces.total / 20)),
        people=people,
        structures=structures,
        filters={"qui": qui, "mode": mode, "depuis": depuis, "jusqua": jusqua},
        base="/portail/dossier/historique",
    )


# -- preferences, export, closure ---------------------------------------------------------

EVENTS = tuple((key, label) for key, label, _ in alerts.EVENTS)
FREQUENCIES = (
    ("immediat", "tout de suite"),
    ("quotidien", "un résumé par jour"),
    ("jamais", "jamais"),
)
CHANNELS = (("courriel", "par courriel"), ("sms", "par SMS"))


@router.get("/preferences", name="record_preferences", response_class=HTMLResponse)
def preferences(request: Request, pg: PageDep) -> Response:
    _holder(pg)
    return page(
        request,
        "preferences.html",
        session=pg.session,
        prefs=pg.portal.preferences(pg.session),
        events=EVENTS,
        defaults=alerts.DEFAULTS,
        frequencies=FREQUENCIES,
        channels=CHANNELS,
    )


@router.post("/preferences", name="record_preferences_post")
async def preferences_save(request: Request, pg: PostDep) -> Response:
    _holder(pg)
    form = await request.form()
    prefs: dict[str, Any] = {}
    for key, _ in EVENTS:
        value = str(form.get(key, "jamais"))
        if value not in {k for k, _ in FREQUENCIES}:
            raise InvalidInput("fréquence inconnue")
        prefs[key] = value
    channel = str(form.get("canal", "courriel"))
    if channel not in {k for k, _ in CHANNELS}:
        raise InvalidInput("canal inconnu")
    prefs["canal"] = channel
    contact = str(form.get("contact", "")).strip()
    if len(contact) > 200:
        raise InvalidInput("l'adresse ou le numéro est trop long")
    prefs["contact"] = contact
    pg.portal.set_preferences(pg.session, prefs)
    return redirect("/portail/dossier/preferences?fait=1")


def _everything(pg: Page, ins: Ins) -> tuple[Any, list[tuple[DocumentView, bytes]]]:
    record = pg.gate.read_record(ins)
    docs: list[tuple[DocumentView, bytes]] = []
    offset = 0
    while True:
        found = pg.gate.search_documents(ins, limit=100, offset=offset)
        for d in found.items:
            docs.append(pg.gate.read_content(ins, d.logical_id))
        offset += len(found.items)
        if not found.items or offset >= found.total:
            return record, docs


@router.get("/export.json", name="record_export_json")
def export_json(request: Request, pg: PageDep) -> Response:
    ins = _holder(pg)
    record, docs = _everything(pg, ins)
    base = str(request.base_url).rstrip("/") + "/fhir"
    entries: list[dict[str, Any]] = [{"resource": mapping.patient(record, record.key)}]
    for doc, content in docs:
        entries.append({"resource": mapping.document_reference(doc, base)})
        entries.append({"resource": mapping.binary(doc, content)})
    # The whole access history, each trace with why it was allowed (or refused).
    before: int | None = None
    while True:
        traces = pg.gate.history(ins, limit=MAX_PAGE, before=before)
        entries.extend(
            {"resource": mapping.audit_event(t, record.key, t.seq)} for t in traces.items
        )
        if len(traces.items) < MAX_PAGE:
            break
        before = traces.items[-1].seq
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    return Response(
        orjson.dumps(bundle),
        media_type="application/fhir+json",
        headers={"Content-Disposition": 'attachment; filename="mon-dossier.json"'},
    )


@router.get("/synthese.pdf", name="record_export_pdf")
def export_pdf(pg: PageDep) -> Response:
    ins = _holder(pg)
    record, docs = _everything(pg, ins)
    authors = pg.portal.people({d.author_id for d, _ in docs})
    profile = {d.title: profile_text(c) for d, c in docs if d.title.startswith(PROFILE_PREFIX)}
    return Response(
        pdf.summary(record, [d for d, _ in docs], authors, profile, pg.gate.care_summary(ins)),
        media_type="application/pdf",
        headers={"Content-Disposition": 'attachment; filename="mon-dossier.pdf"'},
    )


@router.get("/fermeture", name="record_close", response_class=HTMLResponse)
def close_form(request: Request, pg: PageDep) -> Response:
    ins = _holder(pg)
    return page(request, "fermeture.html", session=pg.session, record=pg.gate.read_record(ins))


@router.post("/fermeture", name="record_close_post", response_class=HTMLResponse)
def close(request: Request, pg: PostDep, motif: Text = "", confirmation: Text = "") -> Response:
    ins = _holder(pg)
    if confirmation != "oui":
        raise InvalidInput("cochez la case pour confirmer la fermeture")
    pg.gate.close_record(ins, motif or "fermeture demandée par le patient")
    return page(request, "ferme.html", session=pg.session)


@router.post("/reouverture", name="record_reopen")
def reopen(pg: PostDep) -> Response:
    ins = _holder(pg)
    pg.gate.reopen_record(ins)
    return redirect("/portail/dossier?fait=reouverture")


@router.post("/suppression", name="record_deletion", response_class=HTMLResponse)
def deletion(request: Request, pg: PostDep, confirmation: Text = "") -> Response:
    ins = _holder(pg)
    if confirmation != "oui":
        raise InvalidInput("cochez la case pour confirmer la demande de suppression")
    due = pg.gate.request_deletion(ins)
    return page(request, "suppression.html", session=pg.session, due=due)


@router.post("/suppression/retrait", name="record_deletion_withdraw")
def withdraw_deletion(pg: PostDep) -> Response:
    """Only the holder (or a representative) takes their deletion request back."""
    pg.gate.withdraw_deletion(_holder(pg))
    return redirect("/portail/dossier?fait=retrait")
