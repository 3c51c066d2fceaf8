"""Portal writes that race, fired 20 at a time on PostgreSQL: a code is spent once, a TOTP code
logs in once, every failed attempt is counted, concurrent letters leave one account and one
working code."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
import sqlalchemy as sa

from dmp.access import codes
from dmp.access.portal import FULL, Portal, Session
from dmp.access.runtime import Runtime
from dmp.clock import FixedClock
from dmp.errors import NotAuthenticated
from dmp.records.schema import activation_codes, portal_accounts
from tests.factories import desk, ins_for, open_record
from tests.test_concurrency import _race

pytestmark = pytest.mark.postgres

N = 20
PASSWORD = "correct horse battery staple"


def _patient_account(world: Runtime, i: int) -> tuple[Portal, str, str]:
    ins = ins_for(i)
    open_record(world, ins)
    letter = world.access(desk()).issue_activation_code(ins)
    return Portal(world), letter.login, letter.code


def test_one_code_sets_one_password(world: Runtime) -> None:
    portal, login, code = _patient_account(world, 41)
    sessions = [portal.start_activation(login, code, f"10.1.0.{i}") for i in range(N)]
    results = _race(N, lambda i: portal.set_password(sessions[i], PASSWORD, PASSWORD))
    assert sum(isinstance(r, Session) for r in results) == 1
    assert all(isinstance(r, NotAuthenticated) for r in results if not isinstance(r, Session))


def test_one_totp_code_logs_in_once(world: Runtime, clock: FixedClock) -> None:
    portal, login, code = _patient_account(world, 42)
    enrol = portal.set_password(
        portal.start_activation(login, code, "10.2.0.1"), PASSWORD, PASSWORD
    )
    secret = portal.enrolment(enrol).secret
    portal.confirm_enrolment(enrol, pyotp.TOTP(secret).at(clock.now()))
    clock.advance(timedelta(seconds=30))
    seconds = [portal.login(login, PASSWORD, f"10.2.1.{i}") for i in range(N)]
    totp = pyotp.TOTP(secret).at(clock.now())
    results = _race(N, lambda i: portal.second_factor(seconds[i], totp, f"10.2.1.{i}"))
    winners = [r for r in results if isinstance(r, Session)]
    assert len(winners) == 1 and winners[0].stage == FULL


def test_every_failed_attempt_is_counted(world: Runtime) -> None:
    portal, login, code = _patient_account(world, 43)
    _race(N, lambda i: portal.start_activation(login, "WRONG-CODE-0000", f"10.3.0.{i}"))
    with world.engine.connect() as conn:
        failures = conn.execute(
            sa.select(portal_accounts.c.failed_logins).where(portal_accounts.c.login == login)
        ).scalar_one()
    assert failures == N
    with pytest.raises(NotAuthenticated):  # locked: even the right code waits
        portal.start_activation(login, code, "10.3.1.1")


def test_concurrent_letters_leave_one_account_and_one_working_code(world: Runtime) -> None:
    ins = ins_for(44)
    open_record(world, ins)
    letters = _race(N, lambda i: world.access(desk()).issue_activation_code(ins))
    assert not [r for r in letters if isinstance(r, Exception)]
    with world.engine.connect() as conn:
        accounts = conn.execute(
            sa.select(sa.func.count()).where(portal_accounts.c.login == ins.value)
        ).scalar_one()
        hashes = conn.execute(sa.select(activation_codes.c.code_hash)).scalars().all()
    assert accounts == 1 and len(hashes) == N
    # Each letter cancelled the one before: one code works, and it is one a letter printed.
    with world.engine.connect() as conn:
        live = (
            conn.execute(
                sa.select(activation_codes.c.code_hash).where(
                    activation_codes.c.expires_at > world.clock.now(),
                    activation_codes.c.used_at.is_(None),
                )
            )
            .scalars()
            .all()
        )
    printed = {codes.code_hash(letter.code): letter for letter in letters}
    assert len(live) == 1 and live[0] in printed
    letter = printed[live[0]]
    assert Portal(world).start_activation(letter.login, letter.code, "10.4.0.1").stage
