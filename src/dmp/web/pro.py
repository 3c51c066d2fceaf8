"""Pages for professionals without integrated software, and the registration desk.

A professional finds a patient by INS (kept in the session, never in a URL), declares the
patient's consent, lists and reads what the rules allow, deposits a PDF or CDA document through
the same publishing service as ITI-65, may break the glass with a justification, and sees their
own traces. A registration desk (a desk agent, or a professional of a structure) opens a record
with the patient's consent and prints the activation letter.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from dmp.access.views import Demographics, NewDocument
from dmp.domain import cda, geo
from dmp.domain.codes import (
    IDENTITY_DOCUMENTS,
    IDENTITY_QUALIFIED,
    TRUSTED_THIRD_PARTY,
    TYPE_LABELS,
    CreationChannel,
    PurposeOfUse,
)
from dmp.domain.french import PARIS
from dmp.domain.ins import OID_DEMO, OID_NIA, OID_NIR, OID_TEST, Ins, parse_ins, spaced_ins
from dmp.errors import Conflict, DmpError, Forbidden, InvalidInput
from dmp.front.explain import explain
from dmp.identity.actor import ActorKind
from dmp.web import pdf
from dmp.web.auth import Text
from dmp.web.deps import Page, PageDep, PostDep, require
from dmp.web.dossier import (
    PER_PAGE,
    _doc_id,
    _page_number,
    _viewable,
    content_response,
    summary_page,
)
from dmp.web.render import french_message, page, redirect

router = APIRouter(prefix="/portail", include_in_schema=False)

PDF_FORMAT = "urn:ihe:iti:xds-sd:pdf:2008"
# A CDA document deposited from the page: the CI-SIS generic format (structured body).
CDA_FORMAT = "urn:ihe:iti:xds-sd:text:2008"
MAX_UPLOAD = 20 * 1024 * 1024
# Structure sectors (TRE_R02) -> the opening channel the statistics count.
_CHANNELS = {"SA33": CreationChannel.PHARMACY, "SA01": CreationChannel.HEALTH_FACILITY}
# The identity documents a desk may record having checked (the trusted third party is the
# insurer's file, not a desk's choice); high-trust ones qualify the identity.
DESK_DOCUMENTS = {k: v for k, v in IDENTITY_DOCUMENTS.items() if k != TRUSTED_THIRD_PARTY}
_RECOVERY_CHANNELS = {
    "courriel": "par courriel, à l'adresse qu'il a enregistrée",
    "sms": "par SMS, au numéro qu'il a enregistré",
    "courrier": "par courrier postal (il n'a enregistré ni adresse électronique ni numéro)",
}


AUTHORITIES = {"nir": OID_NIR, "nia": OID_NIA, "demo": OID_DEMO, "test": OID_TEST}


def _ins(pg: Page, value: str, authority: str) -> Ins:
    """The INS typed in a form, under the chosen assigning authority (demonstration and test
    identifiers only where the service runs in test or demo mode)."""
    if authority not in AUTHORITIES:
        raise InvalidInput("choisissez le type d'identifiant (NIR ou NIA)")
    return parse_ins(
        "".join(value.split()), AUTHORITIES[authority], test_mode=pg.gate.accepts_test_ins
    )


def _patient(pg: Page) -> Ins:
    ins = pg.current_patient()
    if ins is None:
        raise InvalidInput("recherchez d'abord le patient par son INS")
    return ins


# -- professional ------------------------------------------------------------------------


@router.get("/pro", name="pro_home", response_class=HTMLResponse)
def pro_home(request: Request, pg: PageDep) -> Response:
    require(pg, ActorKind.PROFESSIONAL)
    return page(
        request,
        "pro.html",
        session=pg.session,
        patient=pg.current_patient(),
        test_mode=pg.gate.accepts_test_ins,
    )


@router.post("/pro/patient", name="pro_patient")
def pro_patient(pg: PostDep, ins: Text = "", autorite: Text = "nir") -> Response:
    require(pg, ActorKind.PROFESSIONAL)
    found = _ins(pg, ins, autorite)
    # A new patient: back to normal mode (an emergency choice was for the previous one).
    pg.portal.update_data(pg.session, patient_oid=found.oid, patient_value=found.value, mode=None)
    return redirect("/portail/pro/dossier")


def _readable_labels(pg: Page) -> list[str] | None:
    """The document types the professional's profession may read, by name (None: all)."""
    codes = pg.gate.readable_types()
    if codes is None:
        return None
    return sorted({TYPE_LABELS[c] for c in codes if c in TYPE_LABELS})


@router.get("/pro/dossier", name="pro_record", response_class=HTMLResponse)
def pro_record(
    request: Request,
    pg: PageDep,
    type_: Annotated[str, Query(alias="type", max_length=20)] = "",
    p: Annotated[int, Query()] = 1,
) -> Response:
    require(pg, ActorKind.PROFESSIONAL)
    ins = _patient(pg)
    p = _page_number(p)
    refusal = None
    record = docs = None
    total = 0
    try:
        record = pg.gate.read_record(ins)
        found = pg.gate.search_documents(
            ins,
            type_codes=(type_,) if type_ else None,
            limit=PER_PAGE,
            offset=(p - 1) * PER_PAGE,
        )
        docs, total = found.items, found.total
    except (Forbidden, DmpError) as exc:
        if exc.status not in (403, 404):
            raise
        refusal = exc
    authors = pg.portal.people({d.author_id for d in docs or []})
    return page(
        request,
        "pro_dossier.html",
        status=200 if refusal is None else refusal.status,
        session=pg.session,
        readable=_readable_labels(pg),
        ins=ins,
        record=record,
        docs=docs or [],
        total=total,
        p=p,
        pages=max(1, math.ceil(total / PER_PAGE)),
        authors=authors,
        refusal=french_message(refusal) if refusal else None,
        refusal_reason=refusal.reason if refusal else None,
        emergency=pg.session.data.get("mode") == PurposeOfUse.EMERGENCY.value,
        types=sorted(TYPE_LABELS.items(), key=lambda kv: kv[1]),
        filters={"type": type_},
        base="/portail/pro/dossier",
    )


@router.post("/pro/consentement", name="pro_consent")
def pro_consent(pg: PostDep, confirmation: Text = "") -> Response:
    require(pg, ActorKind.PROFESSIONAL)
    if confirmation != "oui":
        raise InvalidInput("cochez la case : le patient vous a donné son consentement")
    pg.gate.declare_consent(_patient(pg))
    return redirect("/portail/pro/dossier?fait=consentement")


@router.post("/pro/urgence", name="pro_emergency")
def pro_emergency(request: Request, pg: PostDep, justification: Text = "") -> Response:
    """Break the glass: the justification goes to the gate, which opens the time-boxed window
    (refused if the patient opposed it); the session then stays in emergency mode for this one
    patient."""
    require(pg, ActorKind.PROFESSIONAL)
    ins = _patient(pg)
    justification = justification.strip()
    if len(justification) < 10:
        raise InvalidInput("décrivez la situation d'urgence (10 caractères au moins)")
    gate = pg.portal.gate(
        pg.session,
        pg.ctx,
        purpose=PurposeOfUse.EMERGENCY,
        justification=justification[:1000],
        patient=ins,
    )
    gate.read_record(ins)
    pg.portal.update_data(pg.session, mode=PurposeOfUse.EMERGENCY.value)
    return redirect("/portail/pro/dossier?fait=urgence")


@router.post("/pro/mode-normal", name="pro_normal")
def pro_normal(pg: PostDep) -> Response:
    require(pg, ActorKind.PROFESSIONAL)
    pg.portal.update_data(pg.session, mode=None)
    return redirect("/portail/pro/dossier")


@router.get("/pro/documents/{doc_id}", name="pro_document", response_class=HTMLResponse)
def pro_document(request: Request, pg: PageDep, doc_id: str) -> Response:
    require(pg, ActorKind.PROFESSIONAL)
    doc, content = pg.gate.read_content(_patient(pg), _doc_id(doc_id))
    return page(
        request,
        "document.html",
        session=pg.session,
        doc=doc,
        view=_viewable(doc, content),
        authors=pg.portal.people({doc.author_id}),
        base="/portail/pro/documents",
        back="/portail/pro/dossier",
        may_mask=False,
    )


@router.get("/pro/documents/{doc_id}/contenu", name="pro_document_content")
def pro_document_content(pg: PageDep, doc_id: str) -> Response:
    require(pg, ActorKind.PROFESSIONAL)
    doc, content = pg.gate.read_content(_patient(pg), _doc_id(doc_id))
    return content_response(doc, content)


@router.get("/pro/depot", name="pro_deposit", response_class=HTMLResponse)
def pro_deposit_form(request: Request, pg: PageDep) -> Response:
    require(pg, ActorKind.PROFESSIONAL)
    return page(
        request,
        "depot.html",
        session=pg.session,
        ins=_patient(pg),
        types=sorted(TYPE_LABELS.items(), key=lambda kv: kv[1]),
    )


@router.post("/pro/depot", name="pro_deposit_post", response_class=HTMLResponse)
async def pro_deposit(
    request: Request,
    pg: PostDep,
    fichier: Annotated[UploadFile, File()],
    type_: Annotated[str, Form(alias="type")] = "",
    titre: Annotated[str, Form()] = "",
    date_soins: Annotated[str, Form()] = "",
    masque: Annotated[str, Form()] = "",
    invisible_patient: Annotated[str, Form()] = "",
) -> Response:
    """A PDF or a CDA document with its metadata, through the same publishing service as
    ITI-65 (the CDA header is checked against the patient, as there)."""
    require(pg, ActorKind.PROFESSIONAL)
    ins = _patient(pg)
    content = await fichier.read(MAX_UPLOAD + 1)
    if len(content) > MAX_UPLOAD:
        raise InvalidInput("le fichier dépasse 20 Mo")
    header = None
    if content.startswith(b"%PDF-"):
        mime, fmt = "application/pdf", PDF_FORMAT
    elif cda.looks_like_cda(content):
        # A CDA document: its header gives the type and the title when the form leaves them.
        header = cda.parse_header(content)
        mime, fmt = "text/xml", CDA_FORMAT
        type_ = type_ or header.type_code or ""
        titre = titre or header.title or ""
    else:
        raise InvalidInput("déposez un PDF ou un document CDA (XML)")
    if type_ not in TYPE_LABELS:
        raise InvalidInput("choisissez le type du document")
    now = pg.gate.now()
    try:
        start = (
            datetime.combine(date.fromisoformat(date_soins), time(12), UTC) if date_soins else now
        )
    except ValueError:
        raise InvalidInput("la date des soins doit être au format AAAA-MM-JJ") from None
    titre = titre.strip() or TYPE_LABELS[type_]
    stored = await _run(
        pg,
        ins,
        NewDocument(
            type_code=type_,
            format_code=fmt,
            mime_type=mime,
            title=titre[:250],
            creation_time=now,
            service_start=min(start, now),
            masked_ps=masque == "oui",
            invisible_patient=invisible_patient == "oui",
        ),
        content,
    )
    return redirect(f"/portail/pro/documents/{stored}?fait=depot")


async def _run(pg: Page, ins: Ins, meta: NewDocument, content: bytes) -> str:
    from anyio import to_thread

    def work() -> str:
        return pg.gate.deposit_document(ins, meta, content).logical_id

    return await to_thread.run_sync(work)


@router.get("/pro/synthese", name="pro_summary", response_class=HTMLResponse)
def pro_summary(request: Request, pg: PageDep) -> Response:
    """The summary of care of the current patient, from the documents this professional may
    read (the habilitation matrix and the patient's masks apply)."""
    require(pg, ActorKind.PROFESSIONAL)
    return summary_page(request, pg, _patient(pg), holder_side=False)


@router.get("/pro/traces", name="pro_traces", response_class=HTMLResponse)
def pro_traces(request: Request, pg: PageDep, p: Annotated[int, Query()] = 1) -> Response:
    """The professional's own actions on the current patient's record (AC-17)."""
    require(pg, ActorKind.PROFESSIONAL)
    ins = _patient(pg)
    p = _page_number(p)
    traces = pg.gate.history(ins, limit=20, offset=(p - 1) * 20)
    return page(
        request,
        "pro_traces.html",
        session=pg.session,
        traces=[(t, explain(t)) for t in traces.items],
        total=traces.total,
        p=p,
        pages=max(1, math.ceil(traces.total / 20)),
        base="/portail/pro/traces",
    )


# -- registration desk -------------------------------------------------------------------


@router.get("/guichet", name="desk_home", response_class=HTMLResponse)
def desk_home(request: Request, pg: PageDep) -> Response:
    require(pg, ActorKind.DESK_AGENT, ActorKind.PROFESSIONAL)
    return page(
        request,
        "guichet.html",
        session=pg.session,
        form={},
        test_mode=pg.gate.accepts_test_ins,
        documents=DESK_DOCUMENTS,
    )


@router.post("/guichet/ouverture", name="desk_open", response_class=HTMLResponse)
def desk_open(
    request: Request,
    pg: PostDep,
    ins: Text = "",
    autorite: Text = "nir",
    nom: Text = "",
    prenoms: Text = "",
    sexe: Text = "",
    naissance: Text = "",
    commune: Text = "",
    lieu_naissance: Text = "",
    piece: Text = "",
    identite: Text = "",
    consentement: Text = "",
    adresse: Text = "",
    complement: Text = "",
    code_postal: Text = "",
    ville: Text = "",
) -> Response:
    require(pg, ActorKind.DESK_AGENT, ActorKind.PROFESSIONAL)
    postal = {"adresse": adresse, "complement": complement, "code_postal": code_postal}
    postal["ville"] = ville
    form = {
        **postal,
        "ins": ins,
        "autorite": autorite,
        "nom": nom,
        "prenoms": prenoms,
        "sexe": sexe,
        "naissance": naissance,
        "commune": commune,
        "lieu_naissance": lieu_naissance,
        "piece": piece,
        "identite": identite,
        "consentement": consentement,
    }
    try:
        if piece not in DESK_DOCUMENTS:
            raise InvalidInput("choisissez la pièce d'identité que vous avez vérifiée")
        if identite != "oui":
            raise InvalidInput(
                "vérifiez l'identité du patient (pièce d'identité) et cochez la case"
            )
        if consentement != "oui":
            raise InvalidInput(
                "le dossier ne s'ouvre qu'avec le consentement du patient : cochez la case"
            )
        patient = _ins(pg, ins, autorite)
        try:
            born = date.fromisoformat(naissance)
        except ValueError:
            raise InvalidInput("la date de naissance doit être au format AAAA-MM-JJ") from None
        structure_kind = pg.session.data.get("structure_kind")
        channel = (
            CreationChannel.INSURER_DESK
            if pg.kind is ActorKind.DESK_AGENT
            else _CHANNELS.get(str(structure_kind), CreationChannel.PROFESSIONAL)
        )
        opened = pg.gate.open_record(
            patient,
            Demographics(
                nom.strip().upper(),
                prenoms.strip().upper(),
                sexe,
                born,
                commune.strip(),
                birth_place_code=lieu_naissance.strip().upper() or None,
            ),
            channel=channel,
            patient_consent=True,
            identity_document=piece,
        )
    except Conflict as exc:
        # Already open: the desk may still print a new letter for the patient in front of it.
        patient = _ins(pg, ins, autorite)
        pg.portal.update_data(pg.session, patient_oid=patient.oid, patient_value=patient.value)
        return page(
            request,
            "guichet_ouvert.html",
            session=pg.session,
            existed=True,
            message=french_message(exc),
            postal=postal,
            ins_spaced=spaced_ins(patient.value),
        )
    except DmpError as exc:
        return page(
            request,
            "guichet.html",
            status=exc.status,
            session=pg.session,
            form=form,
            error=french_message(exc),
            test_mode=pg.gate.accepts_test_ins,
            documents=DESK_DOCUMENTS,
        )
    pg.portal.update_data(pg.session, patient_oid=patient.oid, patient_value=patient.value)
    return page(
        request,
        "guichet_ouvert.html",
        session=pg.session,
        existed=False,
        qualified=opened.identity_status == IDENTITY_QUALIFIED,
        holder=f"{prenoms.strip().title()} {nom.strip().upper()}",
        ins_spaced=spaced_ins(patient.value),
        postal=postal,
    )


@router.post("/guichet/recuperation", name="desk_recovery", response_class=HTMLResponse)
def desk_recovery(request: Request, pg: PostDep) -> Response:
    """The holder of an activated account lost their password: a recovery code is sent to the
    holder (e-mail, SMS or post), never shown here; their password works until they use it."""
    require(pg, ActorKind.DESK_AGENT, ActorKind.PROFESSIONAL)
    started = pg.gate.start_account_recovery(_patient(pg))
    return page(
        request,
        "guichet_ouvert.html",
        session=pg.session,
        existed=True,
        recovery=started,
        channel=_RECOVERY_CHANNELS[started.channel],
    )


@router.post("/guichet/reouverture", name="desk_reopen", response_class=HTMLResponse)
def desk_reopen(request: Request, pg: PostDep) -> Response:
    """Reopen a closed record at the holder's request (a record closed by death is not)."""
    require(pg, ActorKind.DESK_AGENT, ActorKind.PROFESSIONAL)
    pg.gate.reopen_record(_patient(pg))
    return page(
        request,
        "guichet_ouvert.html",
        session=pg.session,
        existed=True,
        message="Le dossier est rouvert.",
    )


@router.post("/guichet/lettre", name="desk_letter")
def desk_letter(
    request: Request,
    pg: PostDep,
    adresse: Text = "",
    complement: Text = "",
    code_postal: Text = "",
    ville: Text = "",
) -> Response:
    """The activation letter: a new one-time code (the previous one stops working), printed
    in the PDF and stored only as its hash, addressed to the holder at the postal address the
    desk typed (printed, never stored)."""
    require(pg, ActorKind.DESK_AGENT, ActorKind.PROFESSIONAL)
    ins = _patient(pg)
    postal = {"adresse": adresse, "complement": complement, "code_postal": code_postal}
    postal["ville"] = ville
    problem = _postal_problem(adresse, complement, code_postal, ville)
    if problem:
        return page(
            request,
            "guichet_ouvert.html",
            status=422,
            session=pg.session,
            existed=True,
            letter_only=True,
            postal=postal,
            ins_spaced=spaced_ins(ins.value),
            error=problem,
        )
    activation = pg.gate.issue_activation_code(ins)
    to = pdf.PostalAddress(adresse.strip(), complement.strip(), code_postal.strip(), ville.strip())
    return Response(
        pdf.activation_letter(
            activation,
            issuer=pg.portal.structure_place(str(pg.session.data.get("structure_id") or "")),
            to=to,
            portal_url=pg.portal.portal_url,
            today=pg.gate.now().astimezone(PARIS).date(),
        ),
        media_type="application/pdf",
        headers={"Content-Disposition": 'attachment; filename="lettre-activation.pdf"'},
    )


def _postal_problem(line: str, extra: str, postcode: str, city: str) -> str | None:
    """What is wrong with the postal address typed for the letter, in French (None: fine)."""
    fields = {"le numéro et la voie": line, "le code postal": postcode, "la commune": city}
    missing = [name for name, value in fields.items() if not value.strip()]
    if missing:
        return "Pour adresser la lettre, indiquez " + ", ".join(missing) + "."
    if max(len(line.strip()), len(extra.strip()), len(city.strip()) + 6) > 38:
        return "Une ligne d'adresse compte 38 caractères au plus (norme postale) : abrégez-la."
    if not geo.postcode_cities(postcode):
        return f"Le code postal « {postcode.strip()} » n'existe pas en France."
    return None
