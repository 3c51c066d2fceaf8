"""The faces people meet first, in French: the front page, a mistyped address, an upload over
the limit, a wrong INS at the desk, the statistics with a handful of records."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from dmp.app import create_app
from dmp.auth.portal import Portal
from dmp.clock import FixedClock
from dmp.domain.geo import geography
from dmp.domain.ins import spaced_ins
from dmp.identity.actor import ActorKind
from dmp.runtime import Runtime
from tests import stats_model
from tests.factories import GP, NURSE, demographics_for, ins_for, new_document, open_record, pro
from tests.portal_helpers import activate, csrf_of, get, post_form

HTML = {"Accept": "text/html,application/xhtml+xml"}


@pytest.fixture
def client(world: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(world, max_body=200_000)) as c:
        yield c


def test_the_front_page_is_french_and_leads_everywhere(client: TestClient) -> None:
    page = client.get("/", headers=HTML)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<html lang="fr">' in page.text and "Dossier médical partagé" in page.text
    for href in ("/portail", "/stats", "/fhir/metadata", "/openapi.json"):
        assert f'href="{href}"' in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_a_mistyped_address_is_a_french_page_for_a_browser_and_json_for_a_program(
    client: TestClient,
) -> None:
    page = client.get("/acceuil", headers=HTML)
    assert page.status_code == 404 and "text/html" in page.headers["content-type"]
    assert "Cette page n&#39;existe pas" in page.text or "Cette page n'existe pas" in page.text
    program = client.get("/acceuil")
    assert program.status_code == 404 and program.json()["error"] == "http"
    api = client.get("/api/nothing", headers=HTML)
    assert api.status_code == 404 and "json" in api.headers["content-type"]


def test_an_upload_over_the_limit_is_a_french_page_stating_the_limit(
    client: TestClient, world: Runtime, clock: FixedClock
) -> None:
    code, _ = Portal(world).invite(kind=ActorKind.PROFESSIONAL, login=GP, by="test")
    activate(client, clock, GP, code)
    form = get(client, "/portail/pro/depot")
    big = client.post(
        "/portail/pro/depot",
        data={"csrf": csrf_of(form), "titre": "Trop gros"},
        files={"fichier": ("gros.pdf", b"%PDF-" + b"x" * 300_000, "application/pdf")},
    )
    assert big.status_code == 413 and "text/html" in big.headers["content-type"]
    text = html.unescape(big.text)
    assert "dépasse la taille maximale acceptée (195 ko)" in text, text
    assert '"error"' not in text and "too large" not in text


def test_a_wrong_ins_key_is_explained_in_french_at_the_desk(
    client: TestClient, world: Runtime, clock: FixedClock
) -> None:
    code, _ = Portal(world).invite(kind=ActorKind.PROFESSIONAL, login=GP, by="test")
    activate(client, clock, GP, code)
    form = get(client, "/portail/guichet")
    ins = ins_for(71).value
    wrong = ins[:-2] + ("00" if ins[-2:] != "00" else "01")
    answer = post_form(
        client,
        "/portail/guichet/ouverture",
        form,
        ins=wrong,
        autorite="test",
        nom="EXEMPLE",
        prenoms="CAMILLE",
        sexe="F",
        naissance="1991-08-17",
        commune="37003",
        piece="CN",
        identite="oui",
        consentement="oui",
        adresse="12 rue des Tilleuls",
    )
    text = html.unescape(answer.text)
    assert answer.status_code == 422
    assert "La clé de l'INS (ses deux derniers chiffres) ne correspond pas au numéro" in text
    assert "control key" not in text and "Détail" not in text
    # What was typed stays, the check boxes and the address included.
    assert 'value="12 rue des Tilleuls"' in text and text.count("checked") >= 2
    commune = post_form(
        client,
        "/portail/guichet/ouverture",
        form,
        ins=ins,
        autorite="test",
        nom="EXEMPLE",
        prenoms="CAMILLE",
        sexe=demographics_for(ins_for(71)).sex,
        naissance=demographics_for(ins_for(71)).birth_date.isoformat(),
        commune="3700",
        piece="CN",
        identite="oui",
        consentement="oui",
    )
    said = html.unescape(commune.text)
    assert commune.status_code == 422
    assert "« 3700 » n'est pas un code INSEE de commune" in said and "Détail" not in said


def test_the_statistics_read_well_with_a_handful_of_records(
    client: TestClient, world: Runtime
) -> None:
    for i in range(3):
        open_record(world, ins_for(80 + i))
    page = client.get("/stats")
    text = html.unescape(page.text)
    assert page.status_code == 200
    assert '<link rel="stylesheet" href="/portail/static/portail.css">' in text
    assert 'class="entete"' in text and 'aria-current="page"' in text
    # Three records: the published count of Indre-et-Loire is "< 10", or 10 when its cell's
    # offset lifts it there (the model says which). A hidden share is not ranked; no
    # other département is listed at "< 10", and the page counts them in a sentence.
    ranked = re.findall(r'<tr data-departement="([0-9AB]+)">', text)
    shown = stats_model.active(world, "37", 3)
    assert ranked == (["37"] if isinstance(shown, int) else [])
    hidden = len(geography().departements) - len(ranked)
    assert f"{hidden} départements comptent moins de 10 dossiers actifs" in text
    opened = stats_model.opened_total(world, "37", 3)
    evolution = text.split("<h2>Évolution</h2>")[1].split("<h2>")[0]
    if isinstance(opened, int):
        assert "<svg" in evolution
    # Never an empty section: a chart, or the sentence that says why there is none.
    assert ("<svg" in evolution) != (
        "Pas encore assez de dossiers pour tracer une évolution" in evolution
    )
    touraine = html.unescape(client.get("/stats/37").text)
    assert 'class="entete"' in touraine and "<h1>Indre-et-Loire (37)</h1>" in touraine


def test_a_departement_without_records_explains_its_empty_charts(client: TestClient) -> None:
    text = html.unescape(client.get("/stats/2A").text)
    assert "Pas encore assez de dossiers pour tracer une évolution" in text
    assert "<svg" not in text.split("<h2>Évolution</h2>")[1].split("<h2>")[0]


def test_the_statistics_rank_what_they_publish(client: TestClient, world: Runtime) -> None:
    for i in range(40):
        open_record(world, ins_for(100 + i))
    text = html.unescape(client.get("/stats").text)
    ranked = re.findall(r'<tr data-departement="([0-9AB]+)">', text)
    assert ranked == ["37"]
    assert "courbe" in text and "<svg" in text.split("<h2>Évolution</h2>")[1]


def test_a_chart_of_suppressed_points_is_not_drawn() -> None:
    from dmp.stats import trends

    # 3 + an offset of 0: "< 10" in every month, nothing to draw; 40: drawn.
    assert trends.openings_chart({"2026-03": 3}, {"2026-03": 0}, "x") is None
    assert trends.cumulative_chart({"2026-03": 3}, {"2026-03": 0}, [], "x") is None
    assert trends.channels_chart({"2026-03": {"pharmacy": 3}}, {}, "x") is None
    assert trends.openings_chart({"2026-03": 40}, {"2026-03": 0}, "x") is not None
    mixed = trends.channels_chart({"2026-03": {"pharmacy": 40, "online": 2}}, {}, "x")
    assert mixed is not None and "pharmacie" in mixed.lower() and "en ligne" not in mixed.lower()


def test_type_labels_carry_no_code() -> None:
    from dmp.domain.codes import TYPE_LABELS

    for code, label in TYPE_LABELS.items():
        assert code not in label and not re.search(r"\(\d+\)", label), (code, label)


def test_every_page_says_who_is_logged_in(
    client: TestClient, world: Runtime, clock: FixedClock
) -> None:
    ins = ins_for(72)
    open_record(world, ins)
    code, _ = Portal(world).invite(kind=ActorKind.PROFESSIONAL, login=GP, by="test")
    activate(client, clock, GP, code)
    for url in ("/portail/pro", "/portail/guichet", "/portail/pro/traces"):
        text = html.unescape(client.get(url).text)
        assert "Connecté : PRO TEST, médecin, STRUCTURE C10000000025" in text, url
    client.post("/portail/deconnexion", data={"csrf": csrf_of(client.get("/portail/pro"))})
    letter = world.access(pro(world, GP)).issue_activation_code(ins).code
    activate(client, clock, ins.value, letter)
    for url in ("/portail/dossier", "/portail/dossier/historique", "/portail/dossier/synthese"):
        text = html.unescape(client.get(url).text)
        assert f"Connecté : titulaire du dossier, INS {spaced_ins(ins.value)}" in text, url


def test_a_nurse_in_emergency_is_told_why_the_list_is_short(
    client: TestClient, world: Runtime, clock: FixedClock
) -> None:
    ins = ins_for(73)
    open_record(world, ins)
    world.access(pro(world, GP)).deposit_document(
        ins, new_document(clock.now(), type_code="18748-4", title="Scanner"), b"img"
    )
    code, _ = Portal(world).invite(kind=ActorKind.PROFESSIONAL, login=NURSE, by="test")
    activate(client, clock, NURSE, code)
    search = get(client, "/portail/pro")
    record = post_form(client, "/portail/pro/patient", search, ins=ins.value, autorite="test")
    opened = post_form(
        client, "/portail/pro/urgence", record, justification="Patient inconscient aux urgences"
    )
    text = html.unescape(opened.text)
    main = text[text.index("<main") : text.index("</main>")]
    assert "0 document que vous pouvez consulter" in text, main
    assert "Pourquoi certains documents n'apparaissent pas" in text and "<details" in text
    assert "Compte rendu d'examens biologiques" in text  # a type a nurse reads
    assert "même en accès d'urgence" in text
