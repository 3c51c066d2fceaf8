"""The hot lane (dmp.front.lane) answers exactly as the router does, through the same gate.

Every request below is sent to two applications over the same runtime, one with the lane and one
without: status, headers, body and the access log's route must be the same, and each must add
the same events to the holder's access history. A route whose parameters the lane cannot serve
refuses to build.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, Request, Response
from fastapi.testclient import TestClient

from dmp.app import create_app
from dmp.auth import actors
from dmp.domain.ins import Ins
from dmp.front.deps import Gate, grant
from dmp.front.lane import HotLane, route_named
from dmp.identity.tokens import Grant
from dmp.runtime import Runtime
from tests.factories import CARDIOLOGIST, GP, NURSE, ins_for, new_document, open_record, pro
from tests.fhir_helpers import bearer, example

INS = ins_for(41)
SEARCH = "/fhir/DocumentReference"
IDENT = f"patient.identifier=urn:oid:{INS.oid}%7C{INS.value}"
VOLATILE = {"x-request-id", "date"}


@pytest.fixture
def two(world: Runtime) -> Iterator[tuple[TestClient, TestClient, Runtime, list[str]]]:
    open_record(world, INS)
    gp = world.access(pro(world, GP))
    gp.declare_consent(INS)
    at = world.clock.now()
    gp.deposit_document(INS, new_document(at, title="Compte rendu"), b"premier")
    gp.deposit_document(INS, new_document(at, title="Biologie", type_code="11502-2"), b"second")
    gp.deposit_document(INS, new_document(at, title="Masque", masked_ps=True), b"masque")
    world.access(pro(world, CARDIOLOGIST)).declare_consent(INS)
    world.access(actors.patient_actor(world, INS)).block_professional(INS, CARDIOLOGIST)
    with (
        TestClient(create_app(world)) as fast,
        TestClient(create_app(world, hot_lane=False)) as slow,
    ):
        found = slow.get(f"{SEARCH}?{IDENT}", headers=bearer(world, pro(world, GP))).json()
        binaries = [
            "/fhir" + e["resource"]["content"][0]["attachment"]["url"].split("/fhir", 1)[1]
            for e in found["entry"]
        ]
        yield fast, slow, world, binaries


def _history_size(rt: Runtime, ins: Ins) -> int:
    holder = rt.access(actors.patient_actor(rt, ins))
    return holder.history(ins, limit=1).total


def _answers(
    two: tuple[TestClient, TestClient, Runtime, list[str]],
    caplog: pytest.LogCaptureFixture,
    send: Callable[[TestClient, int], Any],
) -> list[tuple[Any, ...]]:
    """What each application (with the lane, then without) answers to ``send``: status,
    headers, body, the access log's route, the events added to the holder's history."""
    fast, slow, rt, _ = two
    answers = []
    for n, client in enumerate((fast, slow)):
        before = _history_size(rt, INS)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="dmp.http"):
            r = send(client, n)
        routes = [getattr(rec, "route", None) for rec in caplog.records if rec.msg == "request"]
        kept = {k: v for k, v in r.headers.items() if k not in VOLATILE}
        answers.append((r.status_code, kept, r.content, routes, _history_size(rt, INS) - before))
    return answers


def _same(
    two: tuple[TestClient, TestClient, Runtime, list[str]],
    caplog: pytest.LogCaptureFixture,
    path: str,
    headers: dict[str, str],
) -> int:
    answers = _answers(two, caplog, lambda client, _: client.get(path, headers=headers))
    assert answers[0] == answers[1], path
    return int(answers[0][0])


def test_the_lane_answers_the_consultations_as_the_router(
    two: tuple[TestClient, TestClient, Runtime, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    rt = two[2]
    gp = bearer(rt, pro(rt, GP))
    statuses = [
        _same(two, caplog, f"{SEARCH}?{IDENT}", gp),
        _same(two, caplog, f"{SEARCH}?{IDENT}&status=current&_count=1", gp),
        _same(two, caplog, f"{SEARCH}?{IDENT}&_count=1&_getpagesoffset=1", gp),
        _same(two, caplog, f"{SEARCH}?{IDENT}&_summary=count", gp),
        _same(two, caplog, f"{SEARCH}?{IDENT}&type=http://loinc.org%7C11502-2", gp),
        _same(two, caplog, f"{SEARCH}?{IDENT}&unknown=1", gp),  # 400: unknown parameter
        _same(two, caplog, f"{SEARCH}?{IDENT}&_count=x", gp),
        _same(two, caplog, SEARCH, gp),  # no patient
        _same(two, caplog, f"{SEARCH}?{IDENT}", {}),  # no token
        _same(two, caplog, f"{SEARCH}?{IDENT}", {"Authorization": "Bearer not-a-token"}),
        _same(two, caplog, f"{SEARCH}?{IDENT}", bearer(rt, pro(rt, CARDIOLOGIST))),  # blocked
        _same(two, caplog, f"{SEARCH}?{IDENT}", bearer(rt, pro(rt, NURSE))),  # no consent
        _same(two, caplog, f"{SEARCH}/", gp),  # not the lane's path: the router's answer
    ]
    assert statuses[0] == 200 and {400, 401, 403} <= set(statuses)


def test_the_lane_answers_the_retrievals_as_the_router(
    two: tuple[TestClient, TestClient, Runtime, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    rt, binaries = two[2], two[3]
    gp = bearer(rt, pro(rt, GP))
    as_fhir = {**gp, "Accept": "application/fhir+json"}
    statuses = [_same(two, caplog, b, gp) for b in binaries]
    statuses += [_same(two, caplog, b, as_fhir) for b in binaries]
    statuses += [
        _same(two, caplog, f"{binaries[0]}?_format=json", gp),
        _same(two, caplog, binaries[0], bearer(rt, pro(rt, CARDIOLOGIST))),  # blocked
        _same(two, caplog, binaries[0], {}),
        _same(two, caplog, "/fhir/Binary/unknown", gp),
        _same(two, caplog, "/fhir/Binary/a/b", gp),  # not the lane's path
    ]
    assert statuses.count(200) == 2 * len(binaries) + 1 and {401, 403, 404} <= set(statuses)


def _posted(
    two: tuple[TestClient, TestClient, Runtime, list[str]],
    caplog: pytest.LogCaptureFixture,
    bodies: tuple[Any, Any],
    headers: dict[str, str],
) -> int:
    """A POST to /fhir, one body through the lane and one through the router: the same
    answer (ids, which differ between two publications, aside), log and audit events."""
    answers = [
        (status, kept, re.sub(rb"[0-9a-f]{20,32}|99999\.\d+", b"<id>", body), *rest)
        for status, kept, body, *rest in _answers(
            two, caplog, lambda client, n: client.post("/fhir", json=bodies[n], headers=headers)
        )
    ]
    assert answers[0] == answers[1], bodies[0].get("type")
    return int(answers[0][0])


def test_the_lane_answers_the_publications_as_the_router(
    two: tuple[TestClient, TestClient, Runtime, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    """The ITI-65 transaction, an async endpoint: awaited on the loop by the lane."""
    rt = two[2]
    gp = bearer(rt, pro(rt, GP))
    text = json.dumps(example("pdsm4dmp/Bundle-example-td2-iti65-lot-soumission.json", INS))

    def lot(n: int) -> Any:  # the same submission with unique ids of its own
        return json.loads(
            text.replace("1.2.3.4.5.6.7.8", f"1.2.3.4.5.6.7.{n}").replace("99999.2", f"99999.{n}")
        )

    not_a_transaction = {**lot(1), "type": "batch"}
    statuses = [
        _posted(two, caplog, (lot(10), lot(11)), gp),
        _posted(two, caplog, (lot(10), lot(11)), gp),  # each again: a unique id taken
        _posted(two, caplog, (not_a_transaction, not_a_transaction), gp),
        _posted(two, caplog, ({"resourceType": "Patient"},) * 2, gp),
        _posted(two, caplog, (lot(12), lot(13)), {}),  # no token
        _posted(two, caplog, (lot(12), lot(13)), bearer(rt, pro(rt, NURSE))),
    ]
    assert statuses[0] == 200 and {400, 401, 409} <= set(statuses), statuses


def test_the_lane_serves_its_routes_and_no_other(
    two: tuple[TestClient, TestClient, Runtime, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lane is in the application's path: its routes never reach the router."""
    fast, _, rt, binaries = two
    taken: list[str] = []
    scopes: list[Any] = []
    chosen = HotLane.lane_for

    def spy(self: HotLane, scope: Any) -> Any:
        found = chosen(self, scope)
        if found is not None:
            taken.append(scope["path"])
            scopes.append(scope)
        return found

    monkeypatch.setattr(HotLane, "lane_for", spy)
    gp = bearer(rt, pro(rt, GP))
    for path in (f"{SEARCH}?{IDENT}", binaries[0], "/fhir/metadata", f"{SEARCH}/x", "/health"):
        fast.get(path, headers=gp)
    fast.post("/fhir", json={"resourceType": "Bundle", "type": "batch"}, headers=gp)
    fast.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=gp)
    assert taken == [SEARCH, binaries[0].split("?")[0], "/fhir"]
    # What the router would have left in the scope: itself (for url_for) and the route chosen.
    assert all(scope["router"] is fast.app.router for scope in scopes)  # type: ignore[attr-defined]
    assert [scope["route"].name for scope in scopes] == [
        "fhir_docref_search",
        "fhir_binary_read",
        "fhir_transaction",
    ]


router = APIRouter()


@router.get("/q", name="with_query")
def _with_query(request: Request, access: Gate, flag: str = "") -> Response:
    raise AssertionError("never called")


@router.get("/g", name="with_grant")
def _with_grant(request: Request, access: Gate, g: Annotated[Grant, Depends(grant)]) -> Response:
    raise AssertionError("never called")


@router.get("/n", name="no_gate")
def _no_gate(request: Request) -> Response:
    raise AssertionError("never called")


@router.get("/i/{n}", name="int_path")
def _int_path(n: int, request: Request, access: Gate) -> Response:
    raise AssertionError("never called")


@pytest.mark.parametrize("name", ["with_query", "with_grant", "no_gate", "int_path"])
def test_a_route_the_lane_cannot_serve_refuses_to_build(name: str) -> None:
    with pytest.raises(RuntimeError, match="cannot take the hot lane"):
        HotLane(router, [("", route_named(router, name))])


def test_the_lane_names_a_missing_route() -> None:
    with pytest.raises(LookupError):
        route_named(router, "nothing")


def test_the_service_does_not_start_with_a_route_the_lane_cannot_serve(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused when the application is made, not at its first request."""
    monkeypatch.setattr(
        "dmp.app.route_named", lambda _router, _name: route_named(router, "with_query")
    )
    with pytest.raises(RuntimeError, match="'with_query' cannot take the hot lane"):
        create_app(rt)
    create_app(rt, hot_lane=False)  # without the lane, nothing to refuse
