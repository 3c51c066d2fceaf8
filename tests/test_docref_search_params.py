"""DocumentReference searches (ITI-67), parameter by parameter, with FHIR R4's modifiers and
prefixes for each type: token ``:not`` / ``:text`` / ``:missing``, reference ``:missing``, date
``:missing`` and every prefix, ``ne`` included. The database runs these searches: each case is
run on both engines.

Expected answers are written out by hand from FHIR R4's search page (3.1.1.4: ``:not`` matches
a resource without the value, one without the element included; ``:missing``; ``ne`` matches a
value outside the interval, a resource without the element does not match) and from the four
documents published here, never computed by the server's own matching code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from dmp.access.views import NewDocument
from dmp.app import create_app
from dmp.clock import FixedClock
from dmp.domain.ins import OID_TEST
from dmp.runtime import Runtime
from tests.factories import CARDIOLOGIST, GP, ins_for, open_record, pro
from tests.fhir_helpers import bearer

INS = ins_for(213)


def _day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(hour=9, tzinfo=UTC)


def _doc(
    title: str, type_code: str, service: tuple[str, str | None], created: str, **kw: Any
) -> Any:
    start, stop = service
    return NewDocument(
        type_code=type_code,
        format_code="urn:ihe:iti:xds-sd:text:2008",
        mime_type="text/plain",
        title=title,
        creation_time=_day(created),
        service_start=_day(start),
        service_stop=_day(stop) if stop else None,
        **kw,
    )


@pytest.fixture
def client(world: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(world)) as c:
        yield c


@pytest.fixture
def published(world: Runtime) -> dict[str, str]:
    """Four documents by the GP, ten days apart (submitted 2026-03-02, -12, -22, 04-01); the
    last replaces the first, which becomes superseded."""
    open_record(world, INS)
    gp = world.access(pro(world, GP))
    gp.declare_consent(INS)
    clock = world.clock
    assert isinstance(clock, FixedClock)
    consultation = gp.deposit_document(
        INS,
        _doc(
            "Consultation",
            "11488-4",
            ("2026-01-10", "2026-01-12"),
            "2026-01-12",
            unique_id="1.2.250.1.999.1.4001",
            facility_type="SA01",
            practice_setting="AMBULATOIRE",
        ),
        b"consultation",
    )
    clock.advance(timedelta(days=10))
    gp.deposit_document(
        INS,
        _doc(
            "Imagerie",
            "18748-4",
            ("2026-02-05", None),
            "2026-02-05",
            unique_id="1.2.250.1.999.1.4002",
            facility_type="SA02",
            practice_setting="ETABLISSEMENT",
            masked_ps=True,
        ),
        b"imagerie",
    )
    clock.advance(timedelta(days=10))
    gp.deposit_document(
        INS,
        _doc(
            "Biologie",
            "11502-2",
            ("2026-02-20", "2026-02-21"),
            "2026-02-21",
            unique_id="1.2.250.1.999.1.4003",
        ),
        b"biologie",
    )
    clock.advance(timedelta(days=10))
    gp.deposit_document(
        INS,
        _doc(
            "Consultation v2",
            "11488-4",
            ("2026-01-10", "2026-01-12"),
            "2026-02-25",
            unique_id="1.2.250.1.999.1.4004",
            facility_type="SA01",
            practice_setting="AMBULATOIRE",
        ),
        b"consultation v2",
        replaces=consultation.logical_id,
    )
    return bearer(world, pro(world, GP))


def _search(client: TestClient, h: dict[str, str], params: dict[str, str]) -> Any:
    query = {"patient.identifier": f"urn:oid:{OID_TEST}|{INS.value}", **params}
    return client.get("/fhir/DocumentReference", params=query, headers=h)


def _titles(client: TestClient, h: dict[str, str], params: dict[str, str]) -> list[str]:
    r = _search(client, h, params)
    assert r.status_code == 200, r.text
    body = r.json()
    titles = sorted(
        e["resource"]["content"][0]["attachment"]["title"] for e in body.get("entry", [])
    )
    assert body["total"] == len(titles)
    return titles


CURRENT = ["Biologie", "Consultation v2", "Imagerie"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, CURRENT),
        # token :not (an element without the value matches, an absent element too)
        ({"type:not": "11488-4"}, ["Biologie", "Imagerie"]),
        ({"type:not": "http://loinc.org|11488-4,18748-4"}, ["Biologie"]),
        ({"category:not": "10"}, ["Imagerie"]),
        ({"facility:not": "SA01"}, ["Biologie", "Imagerie"]),
        ({"setting:not": "AMBULATOIRE"}, ["Biologie", "Imagerie"]),
        ({"format:not": "urn:ihe:iti:xds-sd:text:2008"}, []),
        (
            {"identifier:not": "urn:ietf:rfc:3986|1.2.250.1.999.1.4002"},
            ["Biologie", "Consultation v2"],
        ),
        ({"author.identifier:not": GP}, []),
        ({"security-label:not": "MASQUE_PS"}, ["Biologie", "Consultation v2"]),
        ({"security-label:not": "N"}, []),
        ({"status:not": "current"}, ["Consultation"]),
        ({"status:not": "superseded"}, CURRENT),
        ({"status:not": "current,superseded"}, []),
        ({"event:not": "X"}, CURRENT),
        # token :text: the display names of the national value sets, case and accents ignored
        ({"type:text": "imagerie"}, ["Imagerie"]),
        ({"type:text": "MEDICALE"}, ["Imagerie"]),
        ({"type:text": "CR"}, CURRENT),
        ({"type:text": "imagerie,biolog"}, ["Biologie", "Imagerie"]),
        ({"type:text": "synthèse"}, []),
        ({"facility:text": "hopital"}, ["Imagerie"]),
        ({"setting:text": "ambulatoire"}, ["Consultation v2"]),
        # :missing on tokens, references and dates
        ({"facility:missing": "true"}, ["Biologie"]),
        ({"facility:missing": "false"}, ["Consultation v2", "Imagerie"]),
        ({"setting:missing": "true"}, ["Biologie"]),
        ({"category:missing": "true"}, []),
        ({"period-end:missing": "true"}, ["Imagerie"]),
        ({"period-end:missing": "false"}, ["Biologie", "Consultation v2"]),
        ({"date:missing": "true"}, []),
        ({"related:missing": "false"}, ["Consultation v2"]),
        ({"relatesto:missing": "true"}, ["Biologie", "Imagerie"]),
        ({"author:missing": "true"}, []),
        ({"event:missing": "true"}, CURRENT),
        ({"event:missing": "false"}, []),
        # date ne: outside the interval; a document without the element does not match
        ({"period": "ne2026-01-10"}, ["Biologie", "Imagerie"]),
        ({"period-start": "ne2026-02"}, ["Consultation v2"]),
        ({"period-end": "ne2026-02-21"}, ["Consultation v2"]),
        ({"creation": "ne2026-02-05"}, ["Biologie", "Consultation v2"]),
        ({"date": "ne2026-03-12"}, ["Biologie", "Consultation v2"]),
        ({"date": "ne2026-03"}, ["Consultation v2"]),
        ({"date": "ne2026-03-12T09:30:00Z"}, ["Biologie", "Consultation v2"]),  # the instant
        # parameters together: AND
        ({"type:not": "18748-4", "period-end:missing": "false"}, ["Biologie", "Consultation v2"]),
        ({"type": "11488-4", "type:text": "imagerie"}, []),
        ({"period": "ge2026-01-01", "creation": "ne2026-02-21"}, ["Consultation v2", "Imagerie"]),
    ],
)
def test_each_modifier_and_prefix(
    client: TestClient, published: dict[str, str], params: dict[str, str], expected: list[str]
) -> None:
    assert _titles(client, published, params) == expected


def test_the_self_link_states_the_modifiers(client: TestClient, published: dict[str, str]) -> None:
    body = _search(client, published, {"type:not": "11488-4", "facility:missing": "false"}).json()
    applied = parse_qs(urlsplit(body["link"][0]["url"]).query)
    assert applied["type:not"] == ["11488-4"] and applied["facility:missing"] == ["false"]


def test_negations_never_reach_past_visibility(
    client: TestClient, published: dict[str, str], world: Runtime
) -> None:
    """:not and :missing narrow what the caller may see, never widen it: the GP's masked
    imaging report stays hidden from another doctor whatever the negation."""
    world.access(pro(world, CARDIOLOGIST)).declare_consent(INS)
    h = bearer(world, pro(world, CARDIOLOGIST))
    assert _titles(client, h, {"type:not": "11488-4"}) == ["Biologie"]
    assert _titles(client, h, {"security-label:not": "N"}) == []
    assert _titles(client, h, {"period-end:missing": "true"}) == []


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("identifier:text", "x", "text"),  # an identifier has no display
        ("category:text", "x", "text"),  # no display names for the class codes
        ("status:missing", "true", "missing"),
        ("period:not", "2026", "not"),  # :not is a token modifier
        ("type:exact", "x", "exact"),
        ("type:missing", "yes", "true or false"),
        ("status:not", "draft", "draft"),
    ],
)
def test_unsupported_modifiers_are_named(
    client: TestClient, published: dict[str, str], name: str, value: str, named: str
) -> None:
    r = _search(client, published, {name: value})
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert named in json.dumps(r.json())


def test_lenient_handling_ignores_what_is_not_served(
    client: TestClient, published: dict[str, str]
) -> None:
    h = {**published, "Prefer": "handling=lenient"}
    r = _search(client, h, {"category:text": "x", "type:not": "18748-4"})
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 2
    applied = parse_qs(urlsplit(body["link"][0]["url"]).query)
    assert "category:text" not in applied and applied["type:not"] == ["18748-4"]
