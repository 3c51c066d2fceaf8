"""Alerts the holder chooses: an access at night, a first access by a professional of another
region, each at once or in the daily digest, off until turned on; compared with what the rules
say (Paris hours, regions of the INSEE geography), through a real SMTP server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from dmp.clock import FixedClock
from dmp.config import Settings
from dmp.domain import alerts
from dmp.runtime import Runtime
from tests.factories import GP, NURSE, ins_for, open_record, pro
from tests.mail import SmtpServer
from tests.notify_helpers import bodies, deliver, notify_runtime, with_account

NIGHT = datetime(2026, 3, 2, 22, 30, tzinfo=UTC)  # 23:30 in Paris (winter time)
DAY = datetime(2026, 3, 3, 13, 0, tzinfo=UTC)  # 14:00 in Paris


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def rt(settings: Settings, clock: FixedClock, smtp: SmtpServer) -> Iterator[Runtime]:
    runtime = notify_runtime(
        settings, clock, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_security="plain"
    )
    yield runtime
    runtime.close()


@pytest.mark.parametrize(
    ("utc", "night"),
    [
        (datetime(2026, 3, 2, 20, 59, tzinfo=UTC), False),  # 21:59 Paris
        (datetime(2026, 3, 2, 21, 0, tzinfo=UTC), True),  # 22:00 Paris
        (datetime(2026, 3, 3, 4, 59, tzinfo=UTC), True),  # 05:59 Paris
        (datetime(2026, 3, 3, 5, 0, tzinfo=UTC), False),  # 06:00 Paris
        (datetime(2026, 7, 1, 20, 30, tzinfo=UTC), True),  # 22:30 Paris, summer time
    ],
)
def test_night_is_told_in_paris_time(utc: datetime, night: bool) -> None:
    assert alerts.is_night(utc, 22, 6) is night


def test_far_means_another_region() -> None:
    assert not alerts.far_apart("37", "41")  # Indre-et-Loire, Loir-et-Cher: Centre-Val de Loire
    assert alerts.far_apart("37", "13")  # Bouches-du-Rhône: Provence-Alpes-Côte d'Azur
    assert not alerts.far_apart("37", None) and not alerts.far_apart(None, "13")


def test_a_night_access_is_told_once_a_night_to_a_holder_who_asked(
    rt: Runtime, smtp: SmtpServer, clock: FixedClock
) -> None:
    ins = ins_for(61)
    open_record(rt, ins)
    with_account(rt, ins, nuit="immediat")
    nurse = rt.access(pro(rt, NURSE))
    nurse.declare_consent(ins)
    clock.set(NIGHT)
    nurse.search_documents(ins)
    clock.advance(timedelta(hours=2))
    nurse.search_documents(ins)  # the same night: no second notice
    deliver(rt)
    night = [t for t in bodies(smtp) if "la nuit" in t]
    assert len(night) == 1, bodies(smtp)
    assert "Pro Test" in night[0] and "2 mars 2026 à 23 h 30" in night[0]
    smtp.inbox.messages.clear()
    clock.set(DAY)
    nurse.search_documents(ins)  # in the day: nothing
    deliver(rt)
    assert not [t for t in bodies(smtp) if "la nuit" in t]


def test_a_night_access_the_next_night_is_told_again(rt: Runtime, clock: FixedClock) -> None:
    """Once a night: a read the next night queues a new notice (the facts ask whether one was
    queued within the last twelve hours, not ever)."""
    ins = ins_for(66)
    open_record(rt, ins)
    nurse = rt.access(pro(rt, NURSE))
    nurse.declare_consent(ins)

    def night_notices() -> int:
        with rt.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text("SELECT count(*) FROM notifications WHERE kind = 'night_access'")
                ).scalar_one()
            )

    clock.set(NIGHT)
    nurse.search_documents(ins)
    clock.advance(timedelta(hours=3))
    nurse.search_documents(ins)
    assert night_notices() == 1
    clock.set(NIGHT + timedelta(days=1))
    nurse.search_documents(ins)
    assert night_notices() == 2


def test_the_night_watch_is_off_until_the_holder_turns_it_on(
    rt: Runtime, smtp: SmtpServer, clock: FixedClock
) -> None:
    ins = ins_for(62)
    open_record(rt, ins)
    with_account(rt, ins)  # never chose
    nurse = rt.access(pro(rt, NURSE))
    nurse.declare_consent(ins)
    clock.set(NIGHT)
    nurse.search_documents(ins)
    report = deliver(rt)
    assert not [t for t in bodies(smtp) if "la nuit" in t]
    assert report.skipped >= 1


def test_a_professional_of_another_region_is_told_at_their_first_access(
    rt: Runtime, smtp: SmtpServer, clock: FixedClock
) -> None:
    marseille = ins_for(63)
    open_record(rt, marseille, commune="13055")  # the patient lives in Marseille
    with_account(rt, marseille, loin="immediat")
    gp = rt.access(pro(rt, GP))  # practises in Amboise (37)
    gp.declare_consent(marseille)
    gp.search_documents(marseille)
    gp.search_documents(marseille)
    tours = ins_for(64)
    open_record(rt, tours)  # a neighbour of the GP's: no such notice
    with_account(rt, tours, loin="immediat")
    gp.declare_consent(tours)
    gp.search_documents(tours)
    deliver(rt)
    far = [t for t in bodies(smtp) if "autre région" in t]
    assert len(far) == 1, bodies(smtp)
    assert "Pro Test" in far[0] and "pour la première fois" in far[0]


def test_a_distant_first_access_queues_its_two_notices_in_one_insert(
    world: Runtime, clock: FixedClock
) -> None:
    """The first access of a professional of another region queues the first-access and the
    distant-access notices together: one statement (a consultation's statements are its cost)."""
    clock.set(DAY)
    marseille = ins_for(65)
    open_record(world, marseille, commune="13055")
    gp = world.access(pro(world, GP))  # practises in Amboise (37)
    gp.declare_consent(marseille)
    inserts: list[Any] = []

    def seen(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().startswith("INSERT INTO notifications"):
            inserts.append(params)

    sa.event.listen(world.engine, "before_cursor_execute", seen)
    try:
        gp.search_documents(marseille)
    finally:
        sa.event.remove(world.engine, "before_cursor_execute", seen)
    assert len(inserts) == 1, inserts
    rows = inserts[0]  # one parameter set per row (dicts on PostgreSQL, tuples on SQLite)
    values = [v for row in rows for v in (row.values() if isinstance(row, dict) else row)]
    kinds = sorted(v for v in values if v in ("first_access", "distant_access"))
    assert kinds == ["distant_access", "first_access"], inserts


def test_the_daily_digest_counts_each_kind(
    rt: Runtime, smtp: SmtpServer, clock: FixedClock
) -> None:
    ins = ins_for(65)
    open_record(rt, ins, commune="13055")
    with_account(rt, ins, premier_acces="quotidien", nuit="quotidien", loin="quotidien")
    clock.set(NIGHT)
    for who in (GP, NURSE):
        gate = rt.access(pro(rt, who))
        gate.declare_consent(ins)
        gate.search_documents(ins)
    deliver(rt)
    assert not [t for t in bodies(smtp) if "Résumé du jour" in t]  # waits for 8:00
    clock.set(datetime(2026, 3, 3, 7, 1, tzinfo=UTC))  # 8:01 in Paris
    deliver(rt)
    digest = [t for t in bodies(smtp) if "Résumé du jour" in t]
    assert len(digest) == 1, bodies(smtp)
    text = digest[0]
    assert "2 professionnels ont consulté votre dossier pour la première fois" in text
    assert "2 consultations de nuit" in text
    assert "2 professionnels d'une autre région ont consulté votre dossier" in text
    assert "Pro Test" not in text  # a digest names nobody
