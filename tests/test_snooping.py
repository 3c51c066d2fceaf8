"""The operator's snooping report, compared with what its rules say (docs/operations.md): who
declared consents themselves on many records, who was refused on many, who opened emergency
windows well above their profession; the report is traced, and the command prints and writes
it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from dmp.auth import actors
from dmp.clock import FixedClock
from dmp.config import Settings
from dmp.domain.codes import PurposeOfUse
from dmp.errors import Forbidden
from dmp.jobs import snooping
from dmp.runtime import Runtime
from tests.factories import CARDIOLOGIST, GP, NURSE, T0, ins_for, load_directory, open_record, pro
from tests.test_cli import dmp
from tests.test_cli import env as cli_env


@pytest.fixture
def rt(settings: Settings, clock: FixedClock) -> Iterator[Runtime]:
    runtime = Runtime.start(
        settings.model_copy(
            update={
                "snoop_self_declared": 3,
                "snoop_refused": 2,
                "snoop_emergency_min": 3,
                "snoop_emergency_factor": 1.5,
            }
        ),
        clock=clock,
    )
    load_directory(runtime)
    yield runtime
    runtime.close()


def _activity(rt: Runtime) -> None:
    records = [ins_for(700 + i) for i in range(4)]
    for ins in records:
        open_record(rt, ins)
    # The nurse ticks the consent box on three records and reads them.
    nurse = rt.access(pro(rt, NURSE))
    for ins in records[:3]:
        nurse.declare_consent(ins)
        nurse.search_documents(ins)
    # The holder authorised the GP on the fourth: no self-declared consent.
    rt.access(actors.patient_actor(rt, records[3])).declare_consent(records[3], GP)
    gp = rt.access(pro(rt, GP))
    gp.search_documents(records[3])
    for ins in records[:2]:  # refused twice (no consent)
        with pytest.raises(Forbidden):
            gp.search_documents(ins)
    # The cardiologist breaks the glass on three records.
    for ins in records[:3]:
        rt.access(
            pro(rt, CARDIOLOGIST), PurposeOfUse.EMERGENCY, justification="urgence", patient=ins
        ).search_documents(ins)


def test_the_report_names_who_crosses_a_threshold_and_why(rt: Runtime) -> None:
    _activity(rt)
    flagged, acted = snooping.report(rt)
    assert acted == 3
    by_id = {p.id_nat_ps: p for p in flagged}
    assert set(by_id) == {NURSE, GP, CARDIOLOGIST}
    nurse, gp, cardio = by_id[NURSE], by_id[GP], by_id[CARDIOLOGIST]
    assert (nurse.read, nurse.self_declared, nurse.refused, nurse.emergency) == (3, 3, 0, 0)
    assert nurse.reasons == ("consentement déclaré par lui-même sur 3 dossiers",)
    assert (gp.read, gp.self_declared, gp.refused) == (1, 0, 2)
    assert gp.reasons == ("accès refusé sur 2 dossiers",)
    # Physicians who read in the period: the GP (0 emergency) and the cardiologist (3): mean
    # 1.5; 3 >= 1.5 x 1.5.
    assert cardio.peers_emergency_mean == 1.5
    assert cardio.reasons == (
        "accès en urgence sur 3 dossiers, 2,0 fois la moyenne de sa profession",
    )


def test_below_the_thresholds_nobody_is_listed(rt: Runtime, clock: FixedClock) -> None:
    _activity(rt)
    clock.advance(timedelta(days=rt.settings.snoop_days + 1))  # all of it out of the period
    flagged, acted = snooping.report(rt)
    assert (flagged, acted) == ([], 0)


def test_the_report_is_traced(rt: Runtime) -> None:
    snooping.report(rt)
    with rt.engine.connect() as conn:
        from sqlalchemy import text

        actions = conn.execute(
            text("SELECT actor_id FROM audit_events WHERE action = 'report.snooping'")
        ).scalars()
        assert list(actions) == ["system:report"]


env = cli_env  # the command's environment (tests/test_cli.py's fixture)


def test_the_command_prints_and_writes_the_page(
    rt: Runtime, env: dict[str, str], tmp_path: Path
) -> None:
    _activity(rt)
    env = {
        **env,
        "DMP_SNOOP_SELF_DECLARED": "3",
        "DMP_SNOOP_REFUSED": "2",
        "DMP_SNOOP_EMERGENCY_MIN": "3",
        "DMP_SNOOP_EMERGENCY_FACTOR": "1.5",
        # The command runs on today's clock; the activity is dated by the tests' clock.
        "DMP_SNOOP_DAYS": str((date.today() - T0.date()).days + 30),
    }
    page = tmp_path / "rapport.html"
    out = dmp(env, "snooping", "--json", "--html", str(page))
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["professionals_acting"] == 3
    assert {p["id_nat_ps"] for p in body["flagged"]} == {NURSE, GP, CARDIOLOGIST}
    text = page.read_text(encoding="utf-8")
    assert '<html lang="fr">' in text and "Accès à surveiller" in text and NURSE in text
    bad = dmp({**env, "DMP_SNOOP_REFUSED": "0"}, "snooping")
    assert bad.returncode != 0 and "snoop_refused" in bad.stderr.lower()
    assert "Traceback" not in bad.stderr
