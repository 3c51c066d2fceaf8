"""The PDFs the portals print (fpdf2): the activation letter and the record's summary."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime

import segno
from fpdf import FPDF

from dmp.access.views import Activation, CareSummary, DocumentView, RecordView
from dmp.domain.ins import spaced_ins
from dmp.web import labels

# The PDF core fonts know Latin-1 only: the few characters of French outside it are spelt out.
_OUTSIDE_LATIN1 = {
    "œ": "oe",
    "Œ": "OE",
    "’": "'",
    "‘": "'",
    "“": '"',
    "”": '"',
    "—": "-",
    "–": "-",
    "…": "...",
    "\u202f": "\u00a0",  # (a no-break space is Latin-1: kept, so « and » stay with their word)
    "€": "EUR",
}


def _latin1(text: str) -> str:
    for ch, repl in _OUTSIDE_LATIN1.items():
        text = text.replace(ch, repl)
    return text.encode("latin-1", errors="replace").decode("latin-1")


class _Doc(FPDF):
    def __init__(self, title: str) -> None:
        super().__init__(format="A4")
        self.set_title(_latin1(title))
        self.set_author("DMP")
        self.set_creation_date(datetime.now(UTC))
        self.set_auto_page_break(auto=True, margin=18)
        self.add_page()
        self.set_margins(20, 20, 20)

    def heading(self, text: str, size: int = 16) -> None:
        self.set_font("Helvetica", "B", size)
        self.multi_cell(0, 8, _latin1(text), new_x="LMARGIN", new_y="NEXT")
        self.ln(2)

    def para(self, text: str, size: int = 11, style: str = "", align: str = "J") -> None:
        self.set_font("Helvetica", style, size)
        self.multi_cell(0, 6, _latin1(text), align=align, new_x="LMARGIN", new_y="NEXT")
        self.ln(1)


@dataclass(frozen=True, slots=True)
class PostalAddress:
    """Where the letter goes, as the desk typed it (printed, never stored)."""

    line: str  # number and street
    extra: str  # building, staircase... (may be empty)
    postcode: str
    city: str


# A French window envelope (DL / C5-6, window on the right): the address block must fall inside.
WINDOW = (110.0, 45.0, 90.0, 40.0)  # x, y, width, height in mm from the page's top left


def _qr_png(url: str) -> io.BytesIO:
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="png", scale=8, border=4)
    out.seek(0)
    return out


def activation_letter(
    activation: Activation,
    *,
    issuer: tuple[str, str | None] | None,
    to: PostalAddress,
    portal_url: str,
    today: date,
) -> bytes:
    """The letter the desk hands over or posts: addressed to the holder (window envelope),
    dated and placed, the identifier spaced as on the Vitale card, the one-time code and its
    expiry, the full portal address with its QR code, how to object, close or get help.
    Printed once; the code is stored only as a hash."""
    url = portal_url.rstrip("/") + "/activation"
    doc = _Doc("Activation de votre dossier médical partagé")
    # Sender, top left.
    doc.set_xy(20, 20)
    doc.set_font("Helvetica", "B", 12)
    doc.cell(85, 6, _latin1("Dossier médical partagé"), new_x="LMARGIN", new_y="NEXT")
    doc.set_font("Helvetica", "", 10)
    if issuer:
        doc.multi_cell(85, 5, _latin1(f"Ouvert par : {issuer[0]}"), new_x="LMARGIN", new_y="NEXT")
        if issuer[1]:
            doc.cell(85, 5, _latin1(issuer[1]), new_x="LMARGIN", new_y="NEXT")
    # Recipient, in the envelope's window.
    x, y, w, _h = WINDOW
    doc.set_xy(x + 2, y + 4)
    doc.set_font("Helvetica", "", 11)
    lines = [activation.holder, to.line, to.extra, f"{to.postcode} {to.city.upper()}"]
    for line in (v.strip() for v in lines):
        if line:
            doc.set_x(x + 2)
            doc.multi_cell(w - 4, 6, _latin1(line), align="L", new_x="LEFT", new_y="NEXT")
    # Place and date, then the subject.
    place = issuer[1] if issuer and issuer[1] else to.city.strip().title()
    doc.set_xy(x + 2, y + 48)
    doc.cell(w - 4, 6, _latin1(f"À {place}, le {labels.date_fr(today)}"), new_x="LMARGIN")
    doc.set_xy(20, y + 62)
    doc.para("Objet : activation de votre dossier médical partagé (DMP)", style="B")
    doc.ln(2)
    doc.para(f"Identifiant de connexion (votre INS) : {spaced_ins(activation.login)}", style="B")
    doc.para(f"Code d'activation à usage unique : {activation.code}", size=14, style="B")
    doc.para(
        f"Ce code est valable jusqu'au {labels.date_fr(activation.expires_at)} "
        "et ne sert qu'une fois."
    )
    doc.heading("Comment activer votre compte", 13)
    top = doc.get_y()
    doc.image(_qr_png(url), x=160, y=top, w=30, h=30)
    doc.set_right_margin(55)
    doc.para(
        "1. Ouvrez le portail du DMP à l'adresse ci-dessous, ou scannez le QR code "
        f"ci-contre :\n{url}\n"
        "2. Saisissez votre identifiant (avec ou sans espaces) et ce code.\n"
        "3. Choisissez un mot de passe d'au moins 12 caractères.\n"
        "4. Ajoutez une application d'authentification (code à 6 chiffres) en scannant le "
        "QR code affiché, puis notez vos codes de secours.",
        align="L",
    )
    doc.set_right_margin(20)
    doc.set_y(max(doc.get_y(), top + 32))
    doc.heading("Vos droits", 13)
    doc.para(
        "Vous décidez qui peut consulter votre dossier : vous pouvez masquer un document, "
        "bloquer un professionnel, vous opposer à l'accès en urgence ou par le centre de "
        "régulation (SAMU-centre 15), et voir chaque accès à votre dossier."
    )
    doc.para(
        "Vous pouvez fermer votre dossier à tout moment depuis le portail (rubrique "
        "«\u00a0Fermer mon dossier\u00a0») ou en le demandant à votre caisse d'assurance "
        "maladie. Vous pouvez aussi vous opposer à son utilisation par un professionnel."
    )
    doc.heading("Besoin d'aide ?", 13)
    doc.para(
        "Si vous avez perdu ce code ou s'il a expiré, un guichet (pharmacie, accueil de "
        "votre caisse ou d'un établissement de santé) peut vous en imprimer un nouveau : "
        "l'ancien cesse alors de fonctionner. Ne communiquez jamais ce code par téléphone "
        "ou par courriel."
    )
    return bytes(doc.output())


def summary(
    record: RecordView,
    docs: list[DocumentView],
    authors: Mapping[str, tuple[str, str | None]],
    profile: Mapping[str, str],
    care: CareSummary | None = None,
) -> bytes:
    """A readable summary of the record: who, its status, the summary of care (each line with
    its source document), the health profile, the documents."""
    d = record.demographics
    doc = _Doc("Mon dossier médical partagé - synthèse")
    doc.heading("Mon dossier médical partagé")
    doc.para(
        f"{d.given_names} {d.used_name or d.birth_family_name}, "
        f"né(e) le {labels.date_fr(d.birth_date)}"
    )
    doc.para(f"INS : {spaced_ins(record.ins.value)}")
    status = "ouvert" if record.status == "active" else "fermé"
    doc.para(f"Dossier {status} depuis le {labels.date_fr(record.opened_at)}.")
    if care is not None:
        doc.heading("Synthèse de soins", 13)
        for kind, heading, empty in labels.SUMMARY_SECTIONS:
            doc.para(heading, style="B")
            lines = care.of(kind)
            if not lines:
                doc.para(empty)
            for line in lines:
                e = line.entry
                sources = ", ".join(
                    f"{labels.type_label(care.documents[i].type_code)} du "
                    f"{labels.date_fr(care.documents[i].created)}"
                    for i in line.sources
                )
                when = f" ({labels.partial_date(e.on)})" if e.on else ""
                detail = f" - {e.detail}" if e.detail else ""
                doc.para(f"- {e.label}{detail}{when}. Source : {sources}.", align="L")
    if profile:
        doc.heading("Mon profil médical", 13)
        for title, text in profile.items():
            doc.para(title, style="B")
            doc.para(text.strip() or "-")
    doc.heading(f"Documents ({len(docs)})", 13)
    for item in docs:
        who = authors.get(item.author_id, (item.author_id, None))[0]
        if item.author_kind == "patient":
            who = "vous-même"
        doc.para(
            f"{labels.date_fr(item.service_start)} - {item.title} "
            f"({labels.type_label(item.type_code)}), par {who}"
        )
    return bytes(doc.output())
