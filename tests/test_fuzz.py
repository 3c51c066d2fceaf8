"""A fuzz of the JSON API and the FHIR API from their OpenAPI description (schemathesis'
strategies on Hypothesis): whatever it sends, the answer is never a 5xx. Short in the suite (a
few examples per operation, each CI run on both engines); DMP_FUZZ_EXAMPLES runs it longer."""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from hypothesis import given
from hypothesis import strategies as st

from dmp.app import create_app
from dmp.auth import actors
from dmp.runtime import Runtime
from tests.factories import GP, ins_for, open_record, pro
from tests.repeatable import repeatable

EXAMPLES = int(os.environ.get("DMP_FUZZ_EXAMPLES", "8"))
INS = ins_for(131)


def test_no_input_gets_a_server_error(world: Runtime) -> None:
    open_record(world, INS)
    world.access(pro(world, GP)).declare_consent(INS)
    app = create_app(world)
    token = actors.token_for(world, actors.professional_actor(world, GP), 3600)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    operations = tried = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @repeatable(EXAMPLES)
        @given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
            # Most operations name a record: fuzz them on one that exists, so that the
            # generated parameters reach the gate and the database, not only a 404.
            if case.path_parameters and "ins" in case.path_parameters:
                case.path_parameters["ins"] = INS.value
                case.query = {**(case.query or {}), "oid": INS.oid}
            nonlocal tried
            tried += 1
            response = case.call()
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} query={case.query} "
                    f"body={str(case.body)[:120]} -> {response.status_code}"
                )

        fuzz()
    print(f"OpenAPI fuzz: {tried} requests over {operations} operations, {len(failures)} 5xx")
    assert operations >= 20  # the walk saw the APIs
    assert not failures, "\n".join(failures[:20])


# The FHIR searches read their parameters themselves (FHIR's syntax: prefixes, modifiers,
# dates of every precision), so the OpenAPI description does not list them: they get their
# own fuzz, values drawn from what FHIR allows and from what breaks parsers.
_DATES = st.one_of(
    st.sampled_from(["9999-12-31", "9999-12", "9999", "0001-01-01", "2024-02-30", "2024-13"]),
    st.from_regex(
        r"(eq|ne|gt|lt|ge|le|sa|eb|ap)?\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2})?(Z|[+-]\d{2}:\d{2})?)?)?)?",
        fullmatch=True,
    ),
)
_DATE_PARAMS = ("date", "creation", "period", "period-start", "period-end")
_VALUES = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"(eq|ne|gt|lt|ge|le|sa|eb|ap)?-?\d{1,5}(-\d{1,2}(-\d{1,2})?)?", fullmatch=True),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(
        [
            "9999-12-31",
            "0001-01-01",
            "2024-02-30",
            "2024-13",
            "ge9999-12-31T23:59:59Z",
            "current",
            "superseded",
            "entered-in-error",
            "true",
            "false",
            "-period",
            "date",
            "urn:oid:1.2.250.1.213.1.4.8|",
            "|",
            "%00",
            "http://loinc.org|11488-4",
        ]
    ),
)


def test_fhir_search_parameters_never_get_a_server_error(world: Runtime) -> None:
    from fastapi.testclient import TestClient

    from dmp.fhir.search import SUPPORTED

    open_record(world, INS)
    world.access(pro(world, GP)).declare_consent(INS)
    token = actors.token_for(world, actors.professional_actor(world, GP), 3600)
    headers = {"Authorization": f"Bearer {token}"}
    plain = sorted(SUPPORTED - {"patient", "patient.identifier"})
    names = plain + [f"{n}:{m}" for n in plain for m in ("not", "text", "missing", "identifier")]
    failures: list[str] = []
    tried = 0
    with TestClient(create_app(world), raise_server_exceptions=False) as client:

        @repeatable(EXAMPLES * 40)
        @given(
            resource=st.sampled_from(["DocumentReference", "AuditEvent", "List", "Consent"]),
            params=st.lists(
                st.one_of(
                    st.tuples(st.sampled_from(names), _VALUES),
                    st.tuples(st.sampled_from(_DATE_PARAMS), _DATES),
                ),
                max_size=4,
            ),
        )
        def fuzz(resource: str, params: list[tuple[str, str]]) -> None:
            nonlocal tried
            tried += 1
            query = [("patient.identifier", f"urn:oid:{INS.oid}|{INS.value}"), *params]
            response = client.get(f"/fhir/{resource}", params=query, headers=headers)
            if response.status_code >= 500:
                failures.append(f"{resource} {query} -> {response.status_code}")

        fuzz()
    print(f"FHIR search fuzz: {tried} requests, {len(failures)} 5xx")
    assert not failures, "\n".join(failures[:20])
