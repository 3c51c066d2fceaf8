"""The portals' story in a real browser (Debian's Chromium, driven by Playwright), each page
checked with axe-core and photographed (``test-screenshots/``, not committed).

The desk opens a record and prints the letter; the patient activates with its code, sets a
password, enrols TOTP, logs in, fills the health profile, sees the document a GP deposited,
masks it, blocks a professional and sees the GP's and an emergency access in the history; the
blocked professional then sees nothing; a representative does not see a document hidden from
representatives; a professional logs in, declares consent, deposits a PDF and reads it back.
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyotp
import pypdf
import pytest

from dmp.auth.portal import Portal
from dmp.clock import FixedClock
from dmp.domain.codes import PurposeOfUse
from dmp.domain.ins import spaced_ins
from dmp.errors import Forbidden
from dmp.identity.actor import ActorKind
from dmp.runtime import Runtime
from tests import summary_fixtures as fx
from tests.browser import Checker, LiveServer
from tests.cda_fixtures import cda_document
from tests.factories import (
    CARDIOLOGIST,
    GP,
    NURSE,
    PHARMACIST,
    PHARMACY,
    ins_for,
    new_document,
    pro,
)
from tests.portal_helpers import minor_with_a_representative, sample_pdf

PASSWORD = "une phrase de passe pour le test"


@pytest.fixture
def server(world: Runtime) -> Iterator[LiveServer]:
    with LiveServer(world) as live:
        yield live


@pytest.fixture
def page(chromium: Any, server: LiveServer) -> Iterator[Any]:
    context = chromium.new_context(base_url=server.url, locale="fr-FR", accept_downloads=True)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    yield tab
    context.close()


def _invite(rt: Runtime, kind: ActorKind, login: str, **kw: Any) -> str:
    return Portal(rt).invite(kind=kind, login=login, by="test", **kw)[0]


def _totp(secret: str, clock: FixedClock) -> str:
    return pyotp.TOTP(secret).at(clock.now())


def _activate(page: Any, check: Checker, clock: FixedClock, login: str, code: str) -> str:
    """Activation in the browser; returns the TOTP secret shown at enrolment."""
    page.goto("/portail/activation")
    check.check(page, "activation")
    page.get_by_label("Identifiant (indiqué sur la lettre)").fill(login)
    page.get_by_label("Code d'activation").fill(code)
    page.get_by_role("button", name="Continuer").click()
    check.check(page, "mot-de-passe")
    page.get_by_label("Nouveau mot de passe").fill(PASSWORD)
    page.get_by_label("Confirmez le mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Enregistrer").click()
    check.check(page, "double-facteur")
    assert page.locator(".qr svg").count() == 1  # the QR code, drawn as SVG by the server
    secret = page.locator("#cle-totp").inner_text()
    page.get_by_label("Code à 6 chiffres").fill(_totp(secret, clock))
    page.get_by_role("button", name="Valider").click()
    check.check(page, "codes-de-secours")
    assert page.locator("#codes-secours li").count() == 8
    return secret


def _login(page: Any, check: Checker, clock: FixedClock, login: str, secret: str) -> None:
    """Password then TOTP, with the keyboard only (Enter submits)."""
    clock.advance(timedelta(seconds=30))
    page.goto("/portail/connexion")
    check.check(page, "connexion")
    page.get_by_label("Identifiant").fill(login)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_label("Mot de passe").press("Enter")
    page.wait_for_url("**/connexion/code")
    check.check(page, "code")
    field = page.get_by_label("Code à 6 chiffres de votre application d'authentification")
    field.fill(_totp(secret, clock))
    field.press("Enter")
    page.wait_for_load_state()


def _logout(page: Any) -> None:
    page.get_by_role("button", name="Se déconnecter").click()
    page.wait_for_url("**/portail?deconnecte=1")


def test_the_whole_story_in_a_browser(
    page: Any, world: Runtime, clock: FixedClock, tmp_path: Path
) -> None:
    check = Checker("story")
    check.watch(page)
    ins = ins_for(31)

    # The front page leads to the portal.
    page.goto("/")
    check.check(page, "site")
    assert page.get_by_role("link", name="Statistiques").first.is_visible()

    # The keyboard reaches the content first (skip link), then the form.
    page.goto("/portail")
    check.check(page, "accueil")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Aller au contenu"

    # 1. The pharmacist at the counter: activates their account, opens the record with the
    #    patient's consent, prints the letter.
    pharmacist = _activate(
        page,
        check,
        clock,
        PHARMACIST,
        _invite(world, ActorKind.PROFESSIONAL, PHARMACIST, structure_id=PHARMACY),
    )
    page.get_by_role("link", name="Ouvrir un dossier").first.click()
    check.check(page, "guichet")
    page.get_by_label("Type d'identifiant").select_option("test")
    page.get_by_label("INS du patient (15 caractères)").fill(ins.value[:-2] + "00")
    status = page.locator("#etat-ins")
    assert "ne correspond pas" in status.inner_text()  # the key, checked as they type
    page.get_by_label("INS du patient (15 caractères)").fill(ins.value)
    assert status.inner_text() == "Clé de contrôle correcte."
    page.get_by_label("Nom de naissance").fill("EXEMPLE")
    page.get_by_label("Prénoms").fill("CAMILLE")
    page.get_by_label("Sexe").select_option("F")
    page.get_by_label("Date de naissance").fill("1991-08-17")  # as the INS encodes it
    page.get_by_label("Code INSEE de la commune de résidence").fill("37003")
    page.get_by_label("Numéro et voie").fill("12 rue des Tilleuls")
    page.get_by_label("Code postal").fill("37400")
    page.get_by_label("Commune", exact=True).fill("Amboise")
    page.get_by_label("Pièce d'identité vérifiée").select_option("CN")
    page.get_by_label("J'ai vérifié l'identité du patient sur cette pièce d'identité").check()
    page.get_by_label("Le patient, informé, consent à l'ouverture de son dossier").check()
    page.get_by_role("button", name="Ouvrir le dossier").click()
    check.check(page, "dossier-ouvert")
    with page.expect_download() as download:
        page.get_by_role("button", name="Imprimer la lettre d'activation (PDF)").click()
    letter = Path(download.value.path()).read_bytes()
    text = "".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(letter)).pages)
    code = re.search(r"Code d'activation à usage unique : ([A-Z0-9-]{14})", text)
    assert code and spaced_ins(ins.value) in text and "12 rue des Tilleuls" in text, text
    _logout(page)
    del pharmacist

    # 2. The GP: logs in, declares the patient's consent, deposits a PDF and reads it back.
    gp_secret = _activate(page, check, clock, GP, _invite(world, ActorKind.PROFESSIONAL, GP))
    page.get_by_role("link", name="Accéder à mon espace").click()
    check.check(page, "pro-recherche")
    page.get_by_label("Type d'identifiant").select_option("test")
    page.get_by_label("INS du patient (15 caractères)").fill(ins.value)
    page.get_by_role("button", name="Ouvrir le dossier").click()
    check.check(page, "pro-sans-consentement")
    page.get_by_label("Le patient, informé, m'a autorisé à accéder à son dossier").check()
    page.get_by_role("button", name="Déclarer le consentement").click()
    check.check(page, "pro-dossier")
    page.get_by_role("link", name="Déposer un document dans ce dossier").click()
    check.check(page, "depot")
    pdf = tmp_path / "compte-rendu.pdf"
    pdf.write_bytes(sample_pdf("Compte rendu de consultation fictif"))
    page.get_by_label("Fichier (PDF ou document CDA, 20 Mo au plus)").set_input_files(str(pdf))
    page.get_by_label("Type de document").select_option("11488-4")
    page.get_by_label("Titre").fill("Consultation de suivi")
    page.get_by_role("button", name="Déposer").click()
    check.check(page, "pro-document")
    assert page.get_by_role("heading", name="Consultation de suivi").is_visible()
    href = page.get_by_role("link", name="Ouvrir le PDF").get_attribute("href")
    assert page.request.get(href).body() == pdf.read_bytes()
    # The summary of care of this patient (nothing structured yet: each section says so).
    page.get_by_role("link", name="Synthèse").first.click()
    check.check(page, "pro-synthese")
    assert page.get_by_text("Aucune allergie n'est inscrite dans les documents.").is_visible()
    _logout(page)

    # Meanwhile: the nurse reads with consent; a cardiologist breaks the glass.
    nurse = world.access(pro(world, NURSE))
    nurse.declare_consent(ins)
    nurse.search_documents(ins)
    world.access(
        pro(world, CARDIOLOGIST),
        PurposeOfUse.EMERGENCY,
        justification="Patiente inconsciente, admise aux urgences",
        patient=ins,
    ).search_documents(ins)
    # ...and the GP's software files a structured medical summary.
    world.access(pro(world, GP)).deposit_document(
        ins,
        dataclasses.replace(
            new_document(clock.now(), type_code="SYNTH", title="Synthèse médicale"),
            mime_type="text/xml",
        ),
        cda_document("medical-summary", patient=(ins.oid, ins.value), sections=fx.VSM),
    )

    # 3. The patient: activates with the letter's code, then logs in again.
    secret = _activate(page, check, clock, ins.value, code.group(1))
    page.get_by_role("link", name="Accéder à mon espace").click()
    check.check(page, "mon-dossier")
    _logout(page)
    _login(page, check, clock, ins.value, secret)
    assert page.get_by_role("heading", name="Mon dossier").is_visible()

    # The health profile.
    page.get_by_role("link", name="Profil médical").first.click()
    check.check(page, "profil")
    page.get_by_label("Allergies et intolérances (texte libre)").fill("Pénicilline")
    page.get_by_role("button", name="Enregistrer « Allergies et intolérances »").click()
    assert page.get_by_text("Votre saisie a été enregistrée").is_visible()

    # The GP's document: seen, opened, masked.
    page.get_by_role("link", name="Documents").first.click()
    check.check(page, "documents")
    page.get_by_role("link", name="Consultation de suivi").click()
    check.check(page, "document")
    page.get_by_role("button", name="Masquer aux professionnels").click()
    assert page.get_by_text("Masqué aux professionnels").first.is_visible()

    # Block the nurse.
    page.get_by_role("link", name="Professionnels").first.click()
    check.check(page, "professionnels")
    page.get_by_label("Identifiant national du professionnel à bloquer").fill(NURSE)
    page.get_by_role("button", name="Bloquer", exact=True).click()
    assert page.get_by_text("Bloqué").first.is_visible()

    # The history: the GP's access, and the emergency access standing out.
    page.get_by_role("link", name="Historique des accès").first.click()
    check.check(page, "historique")
    assert page.locator("tr.urgence").count() >= 1
    assert "PRO TEST, médecin" in page.locator("table").inner_text()
    # Why each could read: the nurse's consent, the cardiologist's justification.
    table = page.locator("table").inner_text()
    assert "Vous avez donné votre consentement à ce professionnel" in table
    assert "« Patiente inconsciente, admise aux urgences »" in table

    page.get_by_label("Mode d'accès").select_option("bris_de_glace")
    page.get_by_role("button", name="Filtrer").click()
    rows = page.locator("tbody tr")
    assert rows.count() >= 1 and rows.count() == page.locator("tr.urgence").count()

    # The summary of care, each line linked to its document.
    page.get_by_role("link", name="Synthèse").first.click()
    check.check(page, "synthese")
    assert page.get_by_text("Amoxicilline").is_visible()
    assert page.get_by_role("link", name="Synthèse du").first.is_visible()

    # The other pages: notifications, closure (explained, not confirmed), an error page.
    page.get_by_role("link", name="Notifications").first.click()
    check.check(page, "notifications")
    page.get_by_label("un résumé par jour").first.check()
    page.get_by_label("par SMS").check()
    page.get_by_role("button", name="Enregistrer").click()
    assert page.get_by_text("Vos préférences ont été enregistrées").is_visible()
    page.goto("/portail/dossier/fermeture")
    check.check(page, "fermeture")
    assert page.get_by_role("button", name="Fermer mon dossier").is_visible()
    page.goto("/portail/dossier/documents/inexistant")
    check.check(page, "erreur")
    assert "n'existe pas ou ne vous est pas accessible" in page.get_by_role("alert").inner_text()

    # Phone width: nothing wider than the screen.
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto("/portail/dossier/historique")
    check.check(page, "historique-telephone")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    _logout(page)

    # 4. The blocked professional now sees nothing, in any mode.
    with pytest.raises(Forbidden):
        nurse.search_documents(ins)
    # The masked document: invisible to the nurse's colleagues, still the GP's (author).
    assert world.access(pro(world, GP)).search_documents(ins).total >= 1
    _login(page, check, clock, GP, gp_secret)
    assert page.get_by_role("heading", name="Rechercher un patient").is_visible()
    page.get_by_label("Type d'identifiant").select_option("test")
    page.get_by_label("INS du patient (15 caractères)").fill(ins.value)
    page.get_by_role("button", name="Ouvrir le dossier").click()
    page.get_by_role("link", name="Mes traces").click()
    check.check(page, "pro-traces")
    assert "ajout d'un document" in page.locator("table").inner_text()
    # No script error on any page (the refusal and error pages' own statuses are not ones).
    errors = [e for e in check.console_errors if not e.startswith("Failed to load resource")]
    assert check.seen and not errors, errors


def test_a_representative_in_a_browser_does_not_see_what_is_hidden_from_representatives(
    page: Any, world: Runtime, clock: FixedClock
) -> None:
    check = Checker("representant")
    check.watch(page)
    _, code = minor_with_a_representative(world, clock, 32, "rep-32")
    _activate(page, check, clock, "rep-32", code)
    page.get_by_role("link", name="Accéder à mon espace").click()
    assert page.get_by_role("heading", name=re.compile("Dossier de")).is_visible()
    page.get_by_role("link", name="Documents").first.click()
    check.check(page, "documents-representant")
    listing = page.locator("main").inner_text()
    assert "Carnet de vaccination" in listing and "confidentielle" not in listing
