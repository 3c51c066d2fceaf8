"""Several nodes on one PostgreSQL, behind Debian's HAProxy (``bench/nodes.py``): three
``dmp serve`` and two ``dmp worker`` processes. What one node learns, every node knows: the
portal's session, the per-address limits, the SMART token endpoint's replay cache; the workers
share the notices (each sent once); a rolling restart loses no request and a killed node fails
only what it had in flight. The long form's figures are in docs/reliability.md.

Runs in the PostgreSQL pass; .ci/run installs HAProxy and fails if these tests were skipped."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from bench import nodes

from dmp.auth import smart
from dmp.auth.throttle import LOGIN_SOURCE, PORTAL_ADDRESS
from dmp.config import Settings
from dmp.jobs import clients
from dmp.runtime import Runtime
from tests.conftest import PG_URL, POSTGRES_ONLY
from tests.factories import (
    CARDIOLOGIST,
    GP,
    HOSPITAL,
    ins_for,
    load_directory,
    new_document,
    open_record,
    pro,
)
from tests.fhir_helpers import assertion, rsa_key
from tests.mail import SmtpServer
from tests.notify_helpers import with_account
from tests.pg_helpers import scratch_database
from tests.portal_helpers import PASSWORD, activate, get, post_form


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(smtp: SmtpServer) -> Iterator[tuple[nodes.Cluster, Settings]]:
    if not PG_URL.startswith("postgresql"):
        pytest.skip(POSTGRES_ONLY)
    if shutil.which("haproxy") is None:
        pytest.skip(nodes.NEEDS_HAPROXY)
    root = Path(tempfile.mkdtemp(prefix="dmp-nodes-"))
    try:
        with scratch_database(PG_URL, "dmp_nodes") as url:
            settings = Settings(
                data_dir=root / "data",
                database_url=url,
                test_mode=True,
                smtp_host="127.0.0.1",
                smtp_port=smtp.port,
                smtp_security="plain",
            )
            mail = {
                "DMP_SMTP_HOST": "127.0.0.1",
                "DMP_SMTP_PORT": str(smtp.port),
                "DMP_SMTP_SECURITY": "plain",
            }
            with nodes.running(settings, root, env=mail) as running:
                yield running, settings
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def rt(cluster: tuple[nodes.Cluster, Settings]) -> Iterator[Runtime]:
    """This process's own view of the cluster's database (real clock, as the nodes have)."""
    runtime = Runtime.start(cluster[1])
    load_directory(runtime)
    yield runtime
    runtime.close()


def _client(lb: nodes.Cluster, source: str) -> httpx.Client:
    """A client on its own loopback address (127/8): each test is one more client address
    for the per-address limits."""
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=lb.url, timeout=30, transport=transport)


def _served_by(responses: list[httpx.Response]) -> set[str]:
    return {r.headers["x-dmp-node"] for r in responses}


def test_a_forged_forwarded_address_gains_nothing_on_any_node(
    cluster: tuple[nodes.Cluster, Settings],
) -> None:
    """Login guesses with a new X-Forwarded-For each time, spread over the three nodes by the
    balancer: the balancer passes on only the client's own address and the nodes count it
    together, so the 21st guess is refused (429), whichever node gets it."""
    lb, _ = cluster
    answers = []
    with _client(lb, "127.0.0.11") as client:
        for n in range(PORTAL_ADDRESS.count + 5):
            form = get(client, "/portail/connexion")
            client.headers["X-Forwarded-For"] = f"198.51.100.{n}"
            answers.append(
                post_form(client, "/portail/connexion", form, identifiant="x", mot_de_passe="y")
            )
    statuses = [a.status_code for a in answers]
    assert statuses[: PORTAL_ADDRESS.count] == [401] * PORTAL_ADDRESS.count
    assert set(statuses[PORTAL_ADDRESS.count :]) == {429}
    assert _served_by(answers) == set(lb.nodes)


def test_a_portal_session_and_a_replayed_assertion_are_known_on_every_node(
    cluster: tuple[nodes.Cluster, Settings], rt: Runtime
) -> None:
    lb, _ = cluster
    ins = ins_for(2701)
    open_record(rt, ins)
    gp = rt.access(pro(rt, GP))
    gp.declare_consent(ins)
    code = gp.issue_activation_code(ins).code
    with _client(lb, "127.0.0.12") as client:
        # Activation is four forms, each on the next node (round robin): the CSRF token and
        # the half-done activation live in the database, not in a node.
        activate(client, rt.clock, ins.value, code)  # type: ignore[arg-type]
        pages = [get(client, "/portail/dossier/documents") for _ in range(6)]
    assert all(p.status_code == 200 and "<h1>Documents</h1>" in p.text for p in pages), [
        (p.status_code, p.url) for p in pages
    ]
    assert _served_by(pages) == set(lb.nodes)

    key, jwks = rsa_key()
    scopes = frozenset({"user/DocumentReference.rs"})
    client_id = clients.register_client(
        rt, name="LGC", structure_id=HOSPITAL, jwks=jwks, scopes=scopes
    )
    token_url = f"{lb.url}/fhir/auth/token"
    signed = assertion(key, jwks, client_id, token_url, idnatps=CARDIOLOGIST)
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": smart.ASSERTION_TYPE,
        "client_assertion": signed,
        "scope": "user/DocumentReference.rs",
    }
    with _client(lb, "127.0.0.12") as client:
        first = client.post(token_url, data=form)
        again = [client.post(token_url, data=form) for _ in range(2)]
    assert first.status_code == 200, first.text
    for r in again:
        assert (r.status_code, r.json()["error"]) == (401, "invalid_client")
        assert "replay" in r.json()["error_description"]
    assert _served_by([first, *again]) == set(lb.nodes)  # the replays went to the others


def test_a_lockout_holds_on_every_node(
    cluster: tuple[nodes.Cluster, Settings], rt: Runtime
) -> None:
    """Wrong passwords for one account from one address, each on the next node: from the
    limit on, that address is held back on every node, even with the right password; the
    holder, from elsewhere, still gets to the second factor."""
    lb, _ = cluster
    ins = ins_for(2702)
    open_record(rt, ins)
    code = rt.access(pro(rt, GP)).issue_activation_code(ins).code
    with _client(lb, "127.0.0.13") as client:
        activate(client, rt.clock, ins.value, code)  # type: ignore[arg-type]

    def attempt(source: str, password: str) -> httpx.Response:
        with _client(lb, source) as client:  # a browser the account never used
            form = get(client, "/portail/connexion")
            return post_form(
                client, "/portail/connexion", form, identifiant=ins.value, mot_de_passe=password
            )

    guesses = [attempt("127.0.0.14", "pas le bon mot de passe") for _ in range(LOGIN_SOURCE.count)]
    assert {g.status_code for g in guesses} == {401}
    assert _served_by(guesses) == set(lb.nodes)
    held = [attempt("127.0.0.14", PASSWORD) for _ in range(len(lb.nodes))]
    assert all("Code de vérification" not in h.text for h in held), [h.text[-400:] for h in held]
    assert _served_by(held) == set(lb.nodes)
    assert "Code de vérification" in attempt("127.0.0.15", PASSWORD).text


def test_two_workers_send_each_notice_once(
    cluster: tuple[nodes.Cluster, Settings], rt: Runtime, smtp: SmtpServer
) -> None:
    people = [ins_for(2710 + i) for i in range(6)]
    for ins in people:
        open_record(rt, ins)
        with_account(rt, ins, nouveau_document="immediat")
    gp = rt.access(pro(rt, GP))
    for ins in people:
        for n in range(2):
            gp.deposit_document(ins, new_document(rt.clock.now(), title=f"Compte rendu {n}"), b"x")
    expected = {f"{ins.value}@patient.invalid" for ins in people}

    def new_documents() -> Counter[str]:
        return Counter(
            str(m["To"])
            for m in smtp.inbox.messages
            if str(m["To"]) in expected and "document" in str(m["Subject"]).lower()
        )

    deadline = time.monotonic() + 60
    while sum(new_documents().values()) < 2 * len(people) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # rounds of both workers after the last notice: nothing is sent twice
    assert new_documents() == dict.fromkeys(expected, 2)
    ids = [m["Message-ID"] for m in smtp.inbox.messages]
    assert len(ids) == len(set(ids))


def test_a_rolling_restart_loses_nothing_and_a_killed_node_only_its_requests(
    cluster: tuple[nodes.Cluster, Settings],
) -> None:
    lb, settings = cluster
    report = nodes.faults_under_load(settings, lb, clients=2, seconds_between=1.0, restarts=1)
    print(report)
    assert report.problems == []
    assert report.failed_during_restarts == 0
    # What the killed node had in flight, at most one request per client; all within a second
    # of the kill (the balancer's health check then takes the node out).
    assert report.failed_after_kill <= report.clients
    assert report.failed_after_kill_within < 1.0
    assert report.retries_failed == 0
    stored = report.stored
    assert stored.acknowledged == stored.acknowledged_found > 0
    assert stored.duplicates == 0 and stored.partial == 0
    assert stored.audit_intact and stored.counters_match
    assert set(report.served_by) == set(lb.nodes)
