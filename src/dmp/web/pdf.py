"""The PDFs the portals print (fpdf2): the activation letter and the record's summary."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from fpdf import FPDF

from dmp.access.views import Activation, DocumentView, RecordView
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
    "\u202f": " ",
    "\u00a0": " ",
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

    def para(self, text: str, size: int = 11, style: str = "") -> None:
        self.set_font("Helvetica", style, size)
        self.multi_cell(0, 6, _latin1(text), new_x="LMARGIN", new_y="NEXT")
        self.ln(1)


def activation_letter(activation: Activation, structure: str | None) -> bytes:
    """The letter the desk hands over: who, the one-time code and its expiry, how to log in,
    object, close the record or get help. Printed once; the code is stored only as a hash."""
    doc = _Doc("Activation de votre dossier médical partagé")
    doc.heading("Votre dossier médical partagé (DMP) est ouvert")
    doc.para(f"Identifiant de connexion (votre INS) : {activation.login}", style="B")
    doc.para(f"Code d'activation à usage unique : {activation.code}", size=14, style="B")
    doc.para(
        f"Ce code est valable jusqu'au {labels.date_fr(activation.expires_at)} "
        "et ne sert qu'une fois."
    )
    if structure:
        doc.para(f"Dossier ouvert avec votre accord par : {structure}.")
    doc.heading("Comment activer votre compte", 13)
    doc.para(
        "1. Ouvrez le portail du DMP, page « Activer mon compte » (/portail/activation).\n"
        "2. Saisissez votre identifiant et ce code.\n"
        "3. Choisissez un mot de passe d'au moins 12 caractères.\n"
        "4. Ajoutez une application d'authentification (code à 6 chiffres) en scannant le "
        "QR code affiché, puis notez vos codes de secours."
    )
    doc.heading("Vos droits", 13)
    doc.para(
        "Vous décidez qui peut consulter votre dossier : vous pouvez masquer un document, "
        "bloquer un professionnel, vous opposer à l'accès en urgence ou par le centre de "
        "régulation (SAMU-centre 15), et voir chaque accès à votre dossier."
    )
    doc.para(
        "Vous pouvez fermer votre dossier à tout moment depuis le portail (rubrique "
        "« Fermer mon dossier ») ou en le demandant à votre caisse d'assurance maladie. "
        "Vous pouvez aussi vous opposer à son utilisation par un professionnel."
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
) -> bytes:
    """A readable summary of the record: who, its status, the health profile, the documents."""
    d = record.demographics
    doc = _Doc("Mon dossier médical partagé - synthèse")
    doc.heading("Mon dossier médical partagé")
    doc.para(
        f"{d.given_names} {d.used_name or d.birth_family_name}, "
        f"né(e) le {labels.date_fr(d.birth_date)}"
    )
    doc.para(f"INS : {record.ins.value}")
    status = "ouvert" if record.status == "active" else "fermé"
    doc.para(f"Dossier {status} depuis le {labels.date_fr(record.opened_at)}.")
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
