"""The access-rule properties through the FHIR API: search and retrieve over HTTP give exactly
what the gate gives (whose invariants tests/test_access_properties.py proves), in every mode."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from dmp.app import create_app
from dmp.domain.codes import PurposeOfUse
from dmp.errors import DmpError
from dmp.identity.actor import system_actor
from dmp.runtime import Runtime
from tests.fhir_helpers import bearer
from tests.test_access_properties import World, _actors, _build, worlds


@pytest.mark.slow
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(w=worlds)
def test_fhir_search_and_retrieve_obey_the_rules(world: Runtime, w: World) -> None:
    rt = world
    ins, ids = _build(rt, w)
    patient_key = rt.access(system_actor("test")).read_record(ins).key
    with TestClient(create_app(rt)) as client:
        for _who, actor, mode in _actors(rt, ins):
            kw = (
                {}
                if mode is PurposeOfUse.NORMAL
                else {"purpose": mode.value, "justification": "patient inconscient", "patient": ins}
            )
            h = bearer(rt, actor, frozenset({"user/*.rs"}), **kw)
            try:
                expected = {
                    f"{d.patient_id}.{d.logical_id}"
                    for d in rt.access(
                        actor, mode, justification="patient inconscient", patient=ins
                    )
                    .search_documents(
                        ins,
                        statuses=("current", "archived", "superseded"),
                        limit=100,
                    )
                    .items
                }
                allowed = True
            except DmpError:
                expected, allowed = set(), False
            r = client.get(
                "/fhir/DocumentReference",
                headers=h,
                params={
                    "patient.identifier": f"urn:oid:{ins.oid}|{ins.value}",
                    "status": "current,superseded",
                    "period": "ge1900-01-01",
                    "_count": "100",
                },
            )
            if not allowed:
                assert r.status_code in (403, 404), r.text
                continue
            assert r.status_code == 200, r.text
            bundle = r.json()
            got = {e["resource"]["id"] for e in bundle.get("entry", [])}
            assert got == expected
            assert bundle["total"] == len(expected)
            for logical in ids:
                fid = f"{patient_key}.{logical}"
                read = client.get(f"/fhir/DocumentReference/{fid}", headers=h)
                content = client.get(f"/fhir/Binary/{fid}", headers=h)
                assert (read.status_code == 200) == (fid in expected)
                assert (content.status_code == 200) == (fid in expected)
                if fid not in expected:
                    assert read.status_code == 404
