"""README.md's "The whole story in a browser", step by step as it is written: `dmp demo` prints
the codes and the identity the desk types, then in Debian's Chromium the pharmacist opens the
record and prints the letter, the GP deposits a document, the nurse breaks the glass, the
patient activates, reads why each could see their record, masks, blocks, and a recovery is
started at the desk. The README's numbered steps are quoted before each part."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pypdf
import pytest

from dmp.clock import FixedClock
from dmp.config import Settings
from dmp.domain.ins import spaced_ins
from dmp.runtime import Runtime
from tests.browser import Checker, LiveServer
from tests.portal_helpers import sample_pdf
from tests.test_portal_browser import _activate, _login, _logout

README = Path(__file__).resolve().parents[1] / "README.md"
JUSTIFICATION = "Patient inconscient, admis aux urgences de nuit"


def _demo(settings: Settings) -> str:
    env = {"DMP_DATA_DIR": str(settings.data_dir), "PATH": "/usr/bin:/bin"}
    if settings.database_url:
        env["DMP_DATABASE_URL"] = settings.database_url
    out = subprocess.run(
        [sys.executable, "-m", "dmp.cli", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def _field(text: str, label: str) -> str:
    found = re.search(rf"{re.escape(label)}: (\S+)", text)
    assert found, (label, text)
    return found.group(1)


@pytest.fixture
def story(settings: Settings) -> Iterator[tuple[str, Runtime]]:
    printed = _demo(settings)
    rt = Runtime.start(
        settings.model_copy(update={"test_mode": True}), clock=FixedClock(datetime.now(UTC))
    )
    yield printed, rt
    rt.close()


def test_the_readme_story_runs_as_written(chromium: Any, story: tuple[str, Runtime]) -> None:
    printed, rt = story
    readme = README.read_text(encoding="utf-8")
    assert "identifier type *Démonstration*" in readme and "**Accès en urgence**" in readme
    clock = rt.clock
    assert isinstance(clock, FixedClock)
    codes = dict(
        re.findall(r"^  (pharmacist, registration desk|GP|nurse): \S+ / (\S+)$", printed, re.M)
    )
    logins = dict(
        re.findall(r"^  (pharmacist, registration desk|GP|nurse): (\S+) / ", printed, re.M)
    )
    found_ins = re.search(r"for the desk: INS (\d{15})", printed)
    assert found_ins, printed
    ins = found_ins.group(1)
    check = Checker("readme")
    with LiveServer(rt) as server:
        context = chromium.new_context(base_url=server.url, locale="fr-FR", accept_downloads=True)
        context.set_default_timeout(10_000)
        page = context.new_page()
        check.watch(page)
        try:
            _walk(page, check, clock, printed, codes, logins, ins)
        finally:
            context.close()


def _walk(
    page: Any,
    check: Checker,
    clock: FixedClock,
    printed: str,
    codes: dict[str, str],
    logins: dict[str, str],
    ins: str,
) -> None:
    desk, gp, nurse = "pharmacist, registration desk", "GP", "nurse"
    # 1.-2. "Activer mon compte: the pharmacist's login and code, a password..., the second
    # factor".
    page.goto("/")
    page.get_by_role("link", name="Mon dossier").first.click()
    pharmacist_secret = _activate(page, check, clock, logins[desk], codes[desk])
    # 3. "Ouvrir un dossier: identifier type Démonstration, the INS the demo printed, the
    # person's identity, the identity document seen, the two checks; Imprimer la lettre".
    page.get_by_role("link", name="Accéder à mon espace").click()
    page.get_by_role("link", name="Ouvrir un dossier").first.click()
    page.get_by_label("Type d'identifiant").select_option(label="Démonstration")
    page.get_by_label("INS du patient (15 caractères)").fill(ins)
    assert page.locator("#etat-ins").inner_text() == "Clé de contrôle correcte."
    page.get_by_label("Nom de naissance").fill(_field(printed, "Nom de naissance"))
    page.get_by_label("Prénoms").fill(_field(printed, "Prénoms"))
    page.get_by_label("Sexe").select_option(label=_field(printed, "Sexe"))
    page.get_by_label("Date de naissance").fill(_field(printed, "Date de naissance"))
    page.get_by_label("Code INSEE de la commune de résidence").fill("37003")
    page.get_by_label("Numéro et voie").fill("1 place du Marché")
    page.get_by_label("Code postal").fill("37400")
    page.get_by_label("Commune", exact=True).fill("Amboise")
    page.get_by_label("Pièce d'identité vérifiée").select_option(label="Carte nationale d'identité")
    page.get_by_label("J'ai vérifié l'identité du patient sur cette pièce d'identité").check()
    page.get_by_label("Le patient, informé, consent à l'ouverture de son dossier").check()
    page.get_by_role("button", name="Ouvrir le dossier").click()
    assert page.get_by_text(f"(INS {spaced_ins(ins)}) a été ouvert").is_visible()
    check.check(page, "dossier-ouvert")
    with page.expect_download() as download:
        page.get_by_role("button", name="Imprimer la lettre d'activation (PDF)").click()
    letter = Path(download.value.path()).read_bytes()
    text = "".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(letter)).pages)
    found = re.search(r"Code d'activation à usage unique : ([A-Z0-9-]{14})", text)
    assert found and spaced_ins(ins) in text and "1 place du Marché" in text, text
    _logout(page)

    # 4. "The GP activates the same way, searches the patient (Rechercher un patient, identifier
    # type Démonstration), declares the patient's consent, deposits a PDF and opens it again."
    _activate(page, check, clock, logins[gp], codes[gp])
    page.get_by_role("link", name="Accéder à mon espace").click()
    page.get_by_label("Type d'identifiant").select_option(label="Démonstration")
    page.get_by_label("INS du patient (15 caractères)").fill(ins)
    page.get_by_role("button", name="Ouvrir le dossier").click()
    page.get_by_label("Le patient, informé, m'a autorisé à accéder à son dossier").check()
    page.get_by_role("button", name="Déclarer le consentement").click()
    page.get_by_role("link", name="Déposer un document dans ce dossier").click()
    page.get_by_label("Fichier (PDF ou document CDA, 20 Mo au plus)").set_input_files(
        {"name": "consultation.pdf", "mimeType": "application/pdf", "buffer": sample_pdf("CR")}
    )
    page.get_by_label("Type de document").select_option("11488-4")
    page.get_by_label("Titre").fill("Consultation du jour")
    page.get_by_role("button", name="Déposer").click()
    assert page.get_by_role("heading", name="Consultation du jour").is_visible()
    _logout(page)

    # 5. "The nurse activates, searches the patient and, the patient unconscious, chooses Accès
    # en urgence with a justification."
    _activate(page, check, clock, logins[nurse], codes[nurse])
    page.get_by_role("link", name="Accéder à mon espace").click()
    page.get_by_label("Type d'identifiant").select_option(label="Démonstration")
    page.get_by_label("INS du patient (15 caractères)").fill(ins)
    page.get_by_role("button", name="Ouvrir le dossier").click()
    page.get_by_label("Justification (obligatoire)").fill(JUSTIFICATION)
    page.get_by_role("button", name="Accéder en urgence").click()
    assert page.get_by_text("Mode urgence (bris de glace)").is_visible()
    _logout(page)

    # 6. "The patient activates with the letter's code (login: their INS, as the letter prints
    # it), opens the GP's document and masks it, reads Historique des accès (the nurse's
    # emergency access stands out, with her justification), blocks the nurse."
    secret = _activate(page, check, clock, spaced_ins(ins), found.group(1))
    page.get_by_role("link", name="Accéder à mon espace").click()
    page.get_by_role("link", name="Documents").first.click()
    page.get_by_role("link", name="Consultation du jour").click()
    page.get_by_role("button", name="Masquer aux professionnels").click()
    page.get_by_role("link", name="Historique des accès").first.click()
    check.check(page, "historique")
    emergency = page.locator("tr.urgence")
    assert emergency.count() >= 1
    assert f"« {JUSTIFICATION} »" in emergency.first.inner_text()
    assert "Vous avez donné votre consentement" in page.locator("table").inner_text()
    page.get_by_role("link", name="Professionnels").first.click()
    page.get_by_label("Identifiant national du professionnel à bloquer").fill(logins[nurse])
    page.get_by_role("button", name="Bloquer", exact=True).click()
    assert page.get_by_text("Bloqué").first.is_visible()
    _logout(page)
    del secret

    # 7. "A patient who lost their password asks at the desk: Ouvrir un dossier with their INS
    # says the record exists; Envoyer un code de récupération au titulaire sends the code to
    # the patient, never to the desk."
    _login(page, check, clock, logins[desk], pharmacist_secret)
    page.get_by_role("link", name="Ouvrir un dossier").first.click()
    page.get_by_label("Type d'identifiant").select_option(label="Démonstration")
    page.get_by_label("INS du patient (15 caractères)").fill(ins)
    page.get_by_label("Nom de naissance").fill(_field(printed, "Nom de naissance"))
    page.get_by_label("Prénoms").fill(_field(printed, "Prénoms"))
    page.get_by_label("Sexe").select_option(label=_field(printed, "Sexe"))
    page.get_by_label("Date de naissance").fill(_field(printed, "Date de naissance"))
    page.get_by_label("Code INSEE de la commune de résidence").fill("37003")
    page.get_by_label("Pièce d'identité vérifiée").select_option(label="Carte nationale d'identité")
    page.get_by_label("J'ai vérifié l'identité du patient sur cette pièce d'identité").check()
    page.get_by_label("Le patient, informé, consent à l'ouverture de son dossier").check()
    page.get_by_role("button", name="Ouvrir le dossier").click()
    assert page.get_by_role("heading", name=re.compile("Ce patient a déjà un dossier")).is_visible()
    page.get_by_role("button", name="Envoyer un code de récupération au titulaire").click()
    assert page.get_by_text("Un code de récupération a été envoyé au titulaire").is_visible()
    _logout(page)
