"""The portals over HTTP: each page is an adapter of the gate, with the security a page with
patient data needs (CSRF, headers, cookies, no patient data in URLs), in French.

The story in a real browser (and the accessibility check) is in ``test_portal_browser.py``;
these tests pin the rules page by page, each compared with what the rules say, not with what the
gate answers.
"""

from __future__ import annotations

import dataclasses
import html
import io
import re
from collections.abc import Iterator
from datetime import timedelta

import pypdf
import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

from dmp.app import create_app
from dmp.auth import actors
from dmp.auth.portal import Portal
from dmp.clock import FixedClock
from dmp.domain.ins import Ins, spaced_ins
from dmp.identity.actor import ActorKind, system_actor
from dmp.jobs import notify
from dmp.runtime import Runtime
from tests.factories import (
    CARDIOLOGIST,
    GP,
    NURSE,
    PHARMACIST,
    PHARMACY,
    demographics_for,
    ins_for,
    new_document,
    open_record,
    pro,
)
from tests.portal_helpers import (
    Account,
    activate,
    csrf_of,
    get,
    login,
    logout,
    minor_with_a_representative,
    post_form,
    sample_pdf,
)


@pytest.fixture
def client(world: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(world)) as c:
        yield c


def _invite(rt: Runtime, kind: ActorKind, login_id: str, **kw: object) -> str:
    code, _ = Portal(rt).invite(kind=kind, login=login_id, by="test", **kw)  # type: ignore[arg-type]
    return code


def _letter_text(pdf: bytes) -> str:
    return "".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)


ADDRESS = {"adresse": "12 rue des Tilleuls", "code_postal": "37400", "ville": "Amboise"}


def _desk_form(client: TestClient, ins: Ins, **changes: str) -> Response:
    """The desk's opening form, filled with an identity that agrees with the INS."""
    form = get(client, "/portail/guichet")
    demo = demographics_for(ins)
    fields = {
        "ins": ins.value,
        "autorite": "test",
        "nom": "EXEMPLE",
        "prenoms": "CAMILLE",
        "sexe": demo.sex,
        "naissance": demo.birth_date.isoformat(),
        "commune": "37003",
        "piece": "CN",
        "identite": "oui",
        "consentement": "oui",
        **ADDRESS,
        **changes,
    }
    return post_form(client, "/portail/guichet/ouverture", form, **fields)


def _desk_opens(client: TestClient, clock: FixedClock, ins: Ins, desk: Account) -> str:
    """The pharmacist at the counter opens the record and prints the letter; returns its code."""
    login(client, clock, desk)
    opened = _desk_form(client, ins)
    assert "Le dossier est ouvert" in opened.text, opened.text
    letter = client.post("/portail/guichet/lettre", data={"csrf": csrf_of(opened), **ADDRESS})
    assert letter.headers["content-type"] == "application/pdf"
    text = _letter_text(letter.content)
    found = re.search(r"Code d'activation à usage unique : ([A-Z0-9-]{14})", text)
    assert found, text
    assert (
        spaced_ins(ins.value) in text and "fermer votre dossier" in text and "Besoin d'aide" in text
    )
    logout(client)
    return found.group(1)


def test_the_letter_needs_an_address_and_the_desk_sees_whom_it_opened_for(
    client: TestClient, world: Runtime, clock: FixedClock
) -> None:
    desk = activate(
        client,
        clock,
        PHARMACIST,
        _invite(world, ActorKind.PROFESSIONAL, PHARMACIST, structure_id=PHARMACY),
    )
    ins = ins_for(31)
    opened = _desk_form(client, ins)
    # The confirmation names the patient, the INS spaced as on the card, and keeps the address.
    assert f"Le dossier de Camille EXEMPLE (INS {spaced_ins(ins.value)})" in opened.text
    assert 'value="12 rue des Tilleuls"' in opened.text
    missing = client.post(
        "/portail/guichet/lettre",
        data={"csrf": csrf_of(opened), "adresse": "3 place du Marché", "code_postal": ""},
    )
    assert missing.status_code == 422 and "text/html" in missing.headers["content-type"]
    assert "indiquez le code postal, la commune" in html.unescape(missing.text)
    assert 'value="3 place du Marché"' in html.unescape(missing.text)  # what was typed stays
    unknown = client.post(
        "/portail/guichet/lettre", data={"csrf": csrf_of(opened), **ADDRESS, "code_postal": "00000"}
    )
    assert unknown.status_code == 422
    assert "Le code postal « 00000 » n'existe pas en France" in html.unescape(unknown.text)
    long = client.post(
        "/portail/guichet/lettre", data={"csrf": csrf_of(opened), **ADDRESS, "adresse": "x" * 39}
    )
    assert long.status_code == 422 and "38 caractères au plus" in html.unescape(long.text)
    # No code was issued by the refused letters: the first good one is the holder's only code.
    letter = client.post("/portail/guichet/lettre", data={"csrf": csrf_of(opened), **ADDRESS})
    code = re.search(r"unique : ([A-Z0-9-]{14})", _letter_text(letter.content))
    assert code
    traces = world.access(actors.patient_actor(world, ins)).history(ins, limit=50).items
    assert [t.action for t in traces].count("account.activation_code") == 1
    logout(client)
    del desk
    # The holder types the identifier as the letter prints it, with its spaces.
    activate(client, clock, spaced_ins(ins.value), code.group(1))
    assert "Mon dossier" in get(client, "/portail/dossier").text


def test_desk_opens_the_record_and_the_letter_code_activates_the_patient(
    client: TestClient, world: Runtime, clock: FixedClock
) -> None:
    desk = activate(
        client,
        clock,
        PHARMACIST,
        _invite(world, ActorKind.PROFESSIONAL, PHARMACIST, structure_id=PHARMACY),
    )
    logout(client)
    ins = ins_for(11)
    code = _desk_opens(client, clock, ins, desk)
    # Counted as the statistics count openings: the pharmacy channel.
    view = world.access(system_actor("t")).read_record(ins)
    assert view.channel == "pharmacy"
    patient = activate(client, clock, ins.value, code)
    home = get(client, "/portail/dossier")
    assert home.status_code == 200 and "Mon dossier" in home.text
    assert "Camille" in home.text
    logout(client)
    # The code worked once.
    form = get(client, "/portail/activation")
    again = post_form(client, "/portail/activation", form, identifiant=ins.value, code=code)
    assert again.status_code == 401 and "incorrect" in again.text
    assert login(client, clock, patient).url.path == "/portail/dossier"


def test_at_the_desk_an_existing_activated_record_gets_a_recovery_not_a_letter(
    client: TestClient, world: Runtime, clock: FixedClock
) -> None:
    """The takeover of issue 21, through the desk's pages: the agent types the INS of a holder
    who activated their account, gets the "already has a record" page, and can neither print a
    letter nor see a recovery code; the attempt is in the holder's trail."""
    desk = activate(
        client,
        clock,
        PHARMACIST,
        _invite(world, ActorKind.PROFESSIONAL, PHARMACIST, structure_id=PHARMACY),
    )
    logout(client)
    ins = ins_for(12)
    code = _desk_opens(client, clock, ins, desk)
    logout(client)
    activate(client, clock, ins.value, code)
    logout(client)

    login(client, clock, desk)
    exists = _desk_form(client, ins)
    assert "Ce patient a déjà un dossier" in exists.text
    letter = client.post("/portail/guichet/lettre", data={"csrf": csrf_of(exists), **ADDRESS})
    assert letter.status_code == 403
    assert "text/html" in letter.headers["content-type"]
    assert "Lancez une récupération" in letter.text
    started = post_form(client, "/portail/guichet/recuperation", exists)
    assert started.status_code == 200, started.text
    assert "Un code de récupération a été envoyé au titulaire par courrier postal" in started.text
    holder = world.access(actors.patient_actor(world, ins))
    traces = holder.history(ins, limit=20).items
    seen = {(t.action, t.actor_id, t.outcome, t.reason) for t in traces}
    assert ("record.open", PHARMACIST, "denied", "DENY_RECORD_EXISTS") in seen
    assert ("account.activation_code", PHARMACIST, "denied", "DENY_ACCOUNT_ACTIVE") in seen
    assert ("account.recovery", PHARMACIST, "success", "ALLOW_OPEN") in seen
    # The code itself is nowhere in what the desk saw.
    notify.deliver_due(world, "w")
    [written] = list(world.settings.effective_letters_dir.glob("*.txt"))
    recovery = re.search(r"usage unique : ([A-Z0-9-]+)\.", written.read_text(encoding="utf-8"))
    assert recovery and recovery.group(1) not in started.text + exists.text


def test_a_contradicting_identity_is_named_in_french_and_the_form_is_kept(
    client: TestClient, world: Runtime, clock: FixedClock
) -> None:
    desk = activate(
        client,
        clock,
        PHARMACIST,
        _invite(world, ActorKind.PROFESSIONAL, PHARMACIST, structure_id=PHARMACY),
    )
    del desk
    ins = ins_for(13)  # a woman born in February 1993
    refused = _desk_form(client, ins, sexe="M", naissance="1990-06-12", piece="PA")
    assert refused.status_code == 422
    text = html.unescape(refused.text)
    assert "contredit l'INS" in text
    for part in ("féminin", "masculin", "1990", "93", "juin", "février"):
        assert part in text, part
    assert 'value="1990-06-12"' in refused.text and 'value="PA" selected' in refused.text
    assert 'id="identite" name="identite" value="oui" required' in refused.text
    assert "checked" in refused.text.split('id="identite"')[1].split(">")[0]


def test_pages_carry_the_security_headers_and_cookies(
    client: TestClient, world: Runtime, clock: FixedClock
) -> None:
    page = get(client, "/portail/connexion")
    csp = page.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    assert '<html lang="fr">' in page.text
    ins = ins_for(12)
    open_record(world, ins)
    letter = world.access(pro(world, GP)).issue_activation_code(ins)
    form = get(client, "/portail/activation")
    started = client.post(
        "/portail/activation",
        data={"csrf": csrf_of(form), "identifiant": ins.value, "code": letter.code},
        follow_redirects=False,
    )
    cookie = started.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/portail" in cookie
    assert "secure" not in cookie  # served over plain HTTP here; set over TLS


def test_a_form_without_its_csrf_token_is_refused(
    client: TestClient, world: Runtime, clock: FixedClock
) -> None:
    refused = client.post("/portail/connexion", data={"identifiant": "x", "mot_de_passe": "y"})
    assert refused.status_code == 400 and "formulaire a expiré" in refused.text
    ins = ins_for(13)
    open_record(world, ins)
    code = world.access(pro(world, GP)).issue_activation_code(ins).code
    activate(client, clock, ins.value, code)
    for url in (
        "/portail/dossier/professionnels/blocage",
        "/portail/dossier/fermeture",
        "/portail/deconnexion",
    ):
        forged = client.post(url, data={"csrf": "forged", "professionnel": GP, "bloquer": "oui"})
        assert forged.status_code == 400, url
    assert world.access(system_actor("t")).read_record(ins).status == "active"
    assert world.access(system_actor("t")).permissions(ins) == []


def test_pages_need_a_full_login_and_never_put_patient_data_in_urls(
    client: TestClient, world: Runtime, clock: FixedClock
) -> None:
    anonymous = client.get("/portail/dossier", follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/portail/connexion"
    ins = ins_for(14)
    open_record(world, ins)
    activate(client, clock, GP, _invite(world, ActorKind.PROFESSIONAL, GP))
    search = get(client, "/portail/pro")
    record = post_form(client, "/portail/pro/patient", search, ins=ins.value, autorite="test")
    assert ins.value not in str(record.url)
    hrefs = re.findall(r'(?:href|action)="([^"]+)"', record.text)
    assert hrefs and all(ins.value not in h for h in hrefs)


def test_patient_masks_a_document_and_only_its_author_and_the_gp_still_see_it(
    client: TestClient, world: Runtime, clock: FixedClock
) -> None:
    ins = ins_for(15)
    open_record(world, ins)
    gp, cardio = world.access(pro(world, GP)), world.access(pro(world, CARDIOLOGIST))
    gp.declare_consent(ins)
    cardio.declare_consent(ins)
    world.access(system_actor("t")).update_settings(ins, medecin_traitant=GP)
    # A lab report: the nurse's profession reads that type (the matrix, AC-5).
    report = new_document(clock.now(), type_code="11502-2", title="Bilan sanguin")
    doc = cardio.deposit_document(ins, report, b"bilan")
    nurse = world.access(pro(world, NURSE))
    nurse.declare_consent(ins)
    assert [d.logical_id for d in nurse.search_documents(ins).items] == [doc.logical_id]

    code = world.access(pro(world, GP)).issue_activation_code(ins).code
    activate(client, clock, ins.value, code)
    listing = get(client, "/portail/dossier/documents")
    assert "Bilan sanguin" in listing.text
    page = get(client, f"/portail/dossier/documents/{doc.logical_id}")
    masked = post_form(
        client, f"/portail/dossier/documents/{doc.logical_id}/masquage", page, masquer="oui"
    )
    assert "Masqué aux professionnels" in masked.text
    assert nurse.search_documents(ins).items == []  # AC-6
    assert [d.logical_id for d in cardio.search_documents(ins).items] == [doc.logical_id]
    assert [d.logical_id for d in gp.search_documents(ins).items] == [doc.logical_id]  # AC-7


def test_a_document_hidden_from_the_patient_stays_invisible_in_every_page(
    client: TestClient, world: Runtime, clock: FixedClock
) -> None:
    ins = ins_for(16)
    open_record(world, ins)
    gp = world.access(pro(world, GP))
    hidden = gp.deposit_document(
        ins, new_document(clock.now(), title="Resultat a annoncer", invisible_patient=True), b"x"
    )
    code = gp.issue_activation_code(ins).code
    patient = activate(client, clock, ins.value, code)
    assert "Resultat a annoncer" not in get(client, "/portail/dossier/documents").text
    assert client.get(f"/portail/dossier/documents/{hidden.logical_id}").status_code == 404
    export = get(client, "/portail/dossier/export.json")
    assert hidden.logical_id not in export.text and "Resultat" not in export.text
    history = get(client, "/portail/dossier/historique")
    assert hidden.logical_id not in history.text
    logout(client)
    clock.advance(timedelta(days=31))  # AC-11: revealed by itself after a month
    login(client, clock, patient)
    assert "Resultat a annoncer" in get(client, "/portail/dossier/documents").text


def test_cda_narrative_is_shown_as_sanitized_html(
    client: TestClient, world: Runtime, clock: FixedClock
) -> None:
    ins = ins_for(17)
    open_record(world, ins)
    gp = world.access(pro(world, GP))
    cda = f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <code code="11488-4" codeSystem="2.16.840.1.113883.6.1"/>
  <title>Consultation</title>
  <effectiveTime value="20260301090000+0100"/>
  <confidentialityCode code="N"/>
  <recordTarget><patientRole>
    <id root="{ins.oid}" extension="{ins.value}"/>
  </patientRole></recordTarget>
  <component><structuredBody><component><section>
    <title>Conclusion</title>
    <text><paragraph>Tension normale &lt;script&gt;alert(1)&lt;/script&gt;</paragraph>
      <list><item>Suivi dans 6 mois</item></list>
      <table><tbody><tr><td colspan="2" onclick="x()">Poids 70 kg</td></tr></tbody></table>
      <renderMultiMedia referencedObject="img1"/><linkHtml href="https://example.org/x">lien</linkHtml>
    </text>
  </section></component></structuredBody></component>
</ClinicalDocument>""".encode()
    meta = dataclasses.replace(
        new_document(clock.now(), title="Consultation"), mime_type="text/xml"
    )
    doc = gp.deposit_document(ins, meta, cda)
    code = gp.issue_activation_code(ins).code
    activate(client, clock, ins.value, code)
    page = get(client, f"/portail/dossier/documents/{doc.logical_id}")
    narrative = page.text.split('<div class="narratif">')[1].split("</div>")[0]
    assert "<h3>Conclusion</h3>" in narrative
    assert "<li>Suivi dans 6 mois</li>" in narrative
    assert '<td colspan="2">Poids 70 kg</td>' in narrative
    # The script written in the narrative is text, shown escaped; nothing runs or is fetched.
    assert "<script" not in narrative and "&lt;script&gt;" in narrative
    assert "onclick" not in narrative and "example.org" not in narrative
    assert "<a " not in narrative and "<img" not in narrative


def test_professional_declares_consent_deposits_a_pdf_and_reads_it_back(
    client: TestClient, world: Runtime, clock: FixedClock
) -> None:
    ins = ins_for(18)
    open_record(world, ins)
    activate(client, clock, GP, _invite(world, ActorKind.PROFESSIONAL, GP))
    search = get(client, "/portail/pro")
    record = post_form(client, "/portail/pro/patient", search, ins=ins.value, autorite="test")
    assert record.status_code == 403 and "consentement du patient" in record.text
    record = post_form(client, "/portail/pro/consentement", record, confirmation="oui")
    assert record.status_code == 200 and "Le consentement du patient a été déclaré" in record.text
    form = get(client, "/portail/pro/depot")
    content = sample_pdf("Compte rendu de consultation fictif")
    stored = client.post(
        "/portail/pro/depot",
        data={"csrf": csrf_of(form), "type": "11488-4", "titre": "Consultation du jour"},
        files={"fichier": ("cr.pdf", content, "application/pdf")},
    )
    assert stored.status_code == 200 and "Le document a été déposé" in stored.text
    doc_id = str(stored.url).rsplit("/", 1)[1].split("?")[0]
    back = client.get(f"/portail/pro/documents/{doc_id}/contenu")
    assert back.content == content and back.headers["content-type"] == "application/pdf"
    assert back.headers["content-disposition"].startswith("inline")
    # Deposited as ITI-65 deposits are: the professional is the author, of their structure.
    doc = world.access(system_actor("t")).read_document(ins, doc_id)
    assert (doc.author_id, doc.format_code) == (GP, "urn:ihe:iti:xds-sd:pdf:2008")
    traces = html.unescape(get(client, "/portail/pro/traces").text)
    assert "ajout d'un document" in traces and "déclaration du consentement" in traces
    # Not a PDF nor a CDA document: refused with a readable message, nothing stored.
    refused = client.post(
        "/portail/pro/depot",
        data={"csrf": csrf_of(form), "type": "11488-4"},
        files={"fichier": ("x.exe", b"MZ\x90\x00", "application/octet-stream")},
    )
    assert refused.status_code == 422 and "PDF ou un document CDA" in refused.text
    assert world.access(system_actor("t")).search_documents(ins).total == 1
    # A title holding a NUL (a multipart form is not checked at the door: the gate refuses
    # it, in French; PostgreSQL once answered 500) or a line break.
    for title in ("Consultation\x00du jour", "Consultation\r\ndu jour"):
        bad = client.post(
            "/portail/pro/depot",
            data={"csrf": csrf_of(form), "type": "11488-4", "titre": title},
            files={"fichier": ("cr.pdf", content, "application/pdf")},
        )
        assert bad.status_code == 422, bad.text
        assert "caractère de contrôle" in html.unescape(bad.text)
    assert world.access(system_actor("t")).search_documents(ins).total == 1


def test_emergency_access_needs_a_justification_and_stands_out_in_the_history(
    client: TestClient, world: Runtime, clock: FixedClock
) -> None:
    ins = ins_for(19)
    open_record(world, ins)
    world.access(pro(world, GP)).deposit_document(
        ins, new_document(clock.now(), title="Synthese", type_code="60591-5"), b"s"
    )
    activate(client, clock, CARDIOLOGIST, _invite(world, ActorKind.PROFESSIONAL, CARDIOLOGIST))
    search = get(client, "/portail/pro")
    record = post_form(client, "/portail/pro/patient", search, ins=ins.value, autorite="test")
    short = post_form(client, "/portail/pro/urgence", record, justification="vite")
    assert short.status_code == 422
    opened = post_form(
        client, "/portail/pro/urgence", record, justification="Patient inconscient aux urgences"
    )
    assert "Mode urgence" in opened.text and "Synthese" in opened.text
    logout(client)
    code = world.access(pro(world, GP)).issue_activation_code(ins).code
    activate(client, clock, ins.value, code)
    history = get(client, "/portail/dossier/historique?mode=bris_de_glace")
    assert 'class="urgence"' in history.text and "accès en urgence" in history.text
    rows = re.findall(r"<tr class=\"urgence\">", history.text)
    assert rows, history.text
    normal_only = get(client, "/portail/dossier/historique?mode=normal")
    assert 'class="urgence"' not in normal_only.text


def test_a_blocked_professional_then_sees_nothing(
    client: TestClient, world: Runtime, clock: FixedClock
) -> None:
    ins = ins_for(20)
    open_record(world, ins)
    nurse = world.access(pro(world, NURSE))
    nurse.declare_consent(ins)
    world.access(pro(world, GP)).deposit_document(
        ins, new_document(clock.now(), type_code="11502-2", title="Bilan"), b"b"
    )
    assert nurse.search_documents(ins).total == 1
    code = world.access(pro(world, GP)).issue_activation_code(ins).code
    activate(client, clock, ins.value, code)
    page = get(client, "/portail/dossier/professionnels")
    assert "PRO TEST" in page.text  # the directory's name, not only the identifier
    assert "Aucun professionnel n'a été déclaré dans votre équipe" in html.unescape(page.text)
    nurse.declare_care_team(ins, CARDIOLOGIST)  # a reader adds a colleague (L1111-17 II)
    page = get(client, "/portail/dossier/professionnels")
    team = page.text.split("Équipe de soins</h2>")[1].split("</table>")[0]
    assert "PRO TEST (médecin)" in team and "2 mars 2026" in team
    blocked = post_form(
        client, "/portail/dossier/professionnels/blocage", page, professionnel=NURSE, bloquer="oui"
    )
    assert "Bloqué" in blocked.text
    from dmp.errors import Forbidden

    with pytest.raises(Forbidden):
        nurse.search_documents(ins)
    with pytest.raises(Forbidden):
        world.access(
            pro(world, NURSE), purpose=_emergency(), justification="urgence vitale", patient=ins
        ).search_documents(ins)
    unblocked = post_form(
        client,
        "/portail/dossier/professionnels/blocage",
        blocked,
        professionnel=NURSE,
        bloquer="non",
    )
    assert "Bloqué" not in unblocked.text.split("<table")[1].split("</table>")[0]
    assert nurse.search_documents(ins).total == 1


def _emergency():  # type: ignore[no-untyped-def]
    from dmp.domain.codes import PurposeOfUse

    return PurposeOfUse.EMERGENCY


def test_the_health_profile_is_stored_as_patient_documents_professionals_read(
    client: TestClient, world: Runtime, clock: FixedClock
) -> None:
    ins = ins_for(21)
    open_record(world, ins)
    gp = world.access(pro(world, GP))
    gp.declare_consent(ins)
    code = gp.issue_activation_code(ins).code
    activate(client, clock, ins.value, code)
    page = get(client, "/portail/dossier/profil")
    saved = post_form(
        client, "/portail/dossier/profil", page, partie="allergies", texte="Pénicilline (urticaire)"
    )
    assert "Pénicilline (urticaire)" in saved.text
    post_form(
        client, "/portail/dossier/profil", saved, partie="allergies", texte="Pénicilline ; arachide"
    )
    post_form(
        client,
        "/portail/dossier/profil",
        saved,
        partie="directives",
        texte="Pas d'acharnement thérapeutique",
    )
    found = gp.search_documents(ins).items
    by_title = {d.title: d for d in found}
    allergies = by_title["Profil médical — Allergies et intolérances"]
    assert allergies.author_kind == "patient" and allergies.type_code == "DOCPAT08"
    assert by_title["Profil médical — Directives anticipées"].type_code == "EXPPAT_3"
    _, content = gp.read_content(ins, allergies.logical_id)
    assert "arachide" in content.decode()  # the second entry replaced the first
    assert len([d for d in found if "Allergies" in d.title]) == 1
    bad = post_form(client, "/portail/dossier/profil", saved, partie="inconnue", texte="x")
    assert bad.status_code == 422


def test_a_representative_does_not_see_what_is_hidden_from_representatives(
    client: TestClient, world: Runtime, clock: FixedClock
) -> None:
    _, code = minor_with_a_representative(world, clock, 22, "rep-22")
    activate(client, clock, "rep-22", code)
    home = get(client, "/portail/dossier")
    assert "Dossier de" in home.text
    listing = get(client, "/portail/dossier/documents")
    assert "Carnet de vaccination" in listing.text and "confidentielle" not in listing.text
    export = get(client, "/portail/dossier/export.json")
    assert "confidentielle" not in export.text and "Carnet de vaccination" in export.text


def test_export_preferences_and_closure(
    client: TestClient, world: Runtime, clock: FixedClock
) -> None:
    ins = ins_for(23)
    open_record(world, ins)
    gp = world.access(pro(world, GP))
    gp.deposit_document(ins, new_document(clock.now(), title="Compte rendu fictif"), b"abc")
    code = gp.issue_activation_code(ins).code
    activate(client, clock, ins.value, code)
    bundle = client.get("/portail/dossier/export.json").json()
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    # The record, its document, then its whole access history (issue 23: the export explains).
    assert kinds[:3] == ["Patient", "DocumentReference", "Binary"]
    assert len(kinds) > 3 and set(kinds[3:]) == {"AuditEvent"}
    summary = client.get("/portail/dossier/synthese.pdf")
    assert "Compte rendu fictif" in _letter_text(summary.content)
    prefs = get(client, "/portail/dossier/preferences")
    saved = post_form(
        client,
        "/portail/dossier/preferences",
        prefs,
        premier_acces="immediat",
        urgence="immediat",
        nouveau_document="quotidien",
        canal="sms",
        contact="0600000000",
    )
    # The number is kept in international form (a contact is checked for its channel).
    assert 'value="quotidien" checked' in saved.text and "+33600000000" in saved.text
    form = get(client, "/portail/dossier/fermeture")
    assert "Plus aucun professionnel" in form.text
    unconfirmed = post_form(client, "/portail/dossier/fermeture", form, motif="test")
    assert unconfirmed.status_code == 422
    closed = post_form(client, "/portail/dossier/fermeture", form, motif="test", confirmation="oui")
    assert "Votre dossier est fermé" in closed.text
    from dmp.errors import Forbidden

    with pytest.raises(Forbidden):
        gp.search_documents(ins)
    assert "Compte rendu fictif" in get(client, "/portail/dossier/documents").text
    # Closed: the holder may reopen it, or ask for its deletion (within three months).
    form = get(client, "/portail/dossier/fermeture")
    reopened = post_form(client, "/portail/dossier/reouverture", form)
    assert "Votre dossier est rouvert" in reopened.text
    gp.declare_consent(ins)  # professionals are back
    form = get(client, "/portail/dossier/fermeture")
    post_form(client, "/portail/dossier/fermeture", form, motif="x", confirmation="oui")
    form = get(client, "/portail/dossier/fermeture")
    asked = post_form(client, "/portail/dossier/suppression", form, confirmation="oui")
    assert "supprimé au plus tard le 31 mai 2026" in asked.text  # T0 + 90 days
