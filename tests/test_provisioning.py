"""Opt-out provisioning with an injected clock: imported beneficiaries may object for six weeks
(through the API, the portal page or the operator); at six weeks without objection the record
opens by itself and the holder is told; an objection, or a record opened at a desk meanwhile,
is respected."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from dmp.app import create_app
from dmp.clock import FixedClock
from dmp.errors import InvalidInput, NotFound
from dmp.identity.actor import system_actor
from dmp.jobs import scheduler
from dmp.jobs.provisioning import OBJECTION_ANSWER, Provisioning
from dmp.runtime import Runtime
from dmp.stats import counters
from tests.factories import OID_TEST, T0, demographics_for, ins_for, open_record
from tests.portal_helpers import get, post_form

INFORMED = (T0 - timedelta(days=1)).date().isoformat()


def _csv(*lines: str) -> str:
    return "ins,oid,nom,prenoms,sexe,naissance,commune,informe_le\n" + "\n".join(lines) + "\n"


def _born(i: int) -> str:
    """The birth date of the fictional person ins_for(i) names (as its INS encodes it)."""
    return demographics_for(ins_for(i)).birth_date.isoformat()


def _line(i: int, **changes: str) -> str:
    demo = demographics_for(ins_for(i))
    fields = {
        "ins": ins_for(i).value,
        "oid": OID_TEST,
        "nom": "EXEMPLE",
        "prenoms": "DOMINIQUE",
        "sexe": demo.sex,
        "naissance": demo.birth_date.isoformat(),
        "commune": "37003",
        "informe_le": INFORMED,
        **changes,
    }
    return ",".join(fields.values())


@pytest.fixture
def client(world: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(world)) as c:
        yield c


def test_import_reports_bad_lines_and_keeps_what_is_listed(world: Runtime) -> None:
    service = Provisioning(world)
    report = service.import_csv(
        _csv(
            _line(81),
            _line(82),
            _line(83, ins="123"),
            _line(84, sexe="X"),
            _line(85, naissance="1980-13-01"),
            _line(86, commune="99999"),
        )
    )
    assert (report.read, report.added, report.already) == (6, 2, 0)
    assert [e.split(":")[0] for e in report.errors] == ["line 4", "line 5", "line 6", "line 7"]
    again = service.import_csv(_csv(_line(81), _line(87)))
    assert (again.added, again.already) == (1, 1)
    assert service.counts() == {"pending": 3}
    with pytest.raises(InvalidInput, match="informe_le"):
        service.import_csv("ins,nom\n1,2\n")
    # Each import is in the trail with what it did, in the transaction that wrote the rows
    # (issue 22: INS, names and birth dates were written unaudited); it names nobody.
    assert _trail(world, "provisioning.import") == [
        ("system:insurer-provisioning", "6 read, 2 added, 4 refused"),
        ("system:insurer-provisioning", "2 read, 1 added, 0 refused"),
    ]


def _trail(rt: Runtime, action: str) -> list[tuple[str, str | None]]:
    with rt.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT actor_id, target FROM audit_events WHERE action = :a ORDER BY seq"),
            {"a": action},
        ).all()
    return [(r.actor_id, r.target) for r in rows]


def test_six_weeks_without_objection_open_the_record_and_an_objection_is_kept(
    world: Runtime, clock: FixedClock, client: TestClient
) -> None:
    service = Provisioning(world)
    service.import_csv(_csv(_line(88), _line(89), _line(90), _line(91)))
    # 89 objects through the API, 90 through the portal page, 91 opened at a desk meanwhile.
    objected = client.post(
        "/api/provisioning/objection",
        json={"ins": ins_for(89).value, "oid": OID_TEST, "birth_date": _born(89)},
    )
    assert objected.status_code == 200 and objected.json()["message"] == OBJECTION_ANSWER
    unknown = client.post(
        "/api/provisioning/objection",
        json={"ins": ins_for(99).value, "oid": OID_TEST, "birth_date": _born(99)},
    )
    assert unknown.json() == objected.json()  # nobody learns who is listed
    assert client.post("/api/provisioning/objection", json={"ins": "x"}).status_code == 422
    form = get(client, "/portail/opposition")
    done = post_form(
        client,
        "/portail/opposition",
        form,
        ins=ins_for(90).value,
        autorite="nir",
        naissance=_born(90),
    )
    assert done.status_code == 200 and "opposition" in done.text
    # The page objects under INS-NIR only; the test INS is objected by the operator instead.
    service.object(ins_for(90), date.fromisoformat(_born(90)), "desk")
    open_record(world, ins_for(91))

    informed = datetime.combine(date.fromisoformat(INFORMED), time(0), UTC)
    deadline = informed + timedelta(days=world.settings.objection_days)
    clock.set(deadline - timedelta(minutes=1))
    scheduler.run_once(world, "w")
    with pytest.raises(NotFound):
        world.access(system_actor("t")).read_record(ins_for(88))
    clock.set(deadline)  # six weeks after the information
    report = scheduler.run_once(world, "w")
    assert "opened after the objection period: 1 records" in report.lines
    view = world.access(system_actor("t")).read_record(ins_for(88))
    assert view.channel == "insurer_provisioning" and view.status == "active"
    kinds = [n["kind"] for n in world.access(system_actor("t")).notifications(ins_for(88))]
    assert "record_opened" in kinds  # the holder is told
    for objector in (89, 90):
        with pytest.raises(NotFound):
            world.access(system_actor("t")).read_record(ins_for(objector))
    assert world.access(system_actor("t")).read_record(ins_for(91)).channel == "pharmacy"
    assert service.counts() == {"opened": 2, "objected": 2}
    assert counters.verify_counters(world) == []
    # Every objection attempt (listed or not) is traced, naming nobody.
    assert _trail(world, "provisioning.objection") == [("system:provisioning-objections", None)] * 4
