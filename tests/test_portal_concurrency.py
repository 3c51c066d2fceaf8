"""Portal writes that race, fired 20 at a time on PostgreSQL: a code is spent once, a TOTP code
logs in once, every failed attempt is counted, concurrent letters leave one account and one
working code, a recovery started twice sends one code, a recovery code sets one password."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
import sqlalchemy as sa

from dmp.access import codes
from dmp.access.views import Recovery
from dmp.auth import throttle
from dmp.auth.portal import FULL, Portal, Session
from dmp.clock import FixedClock
from dmp.crypto import envelope
from dmp.errors import Conflict, NotAuthenticated
from dmp.records.schema import (
    activation_codes,
    audit_events,
    auth_throttle,
    notifications,
    portal_accounts,
)
from dmp.runtime import Runtime
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
        account_id = conn.execute(
            sa.select(portal_accounts.c.id).where(portal_accounts.c.login == login)
        ).scalar_one()
        failures = conn.execute(
            sa.select(auth_throttle.c.count).where(
                auth_throttle.c.key == throttle._key(throttle.LOGIN_ACCOUNT, account_id)
            )
        ).scalar_one()
    assert failures == N == throttle.LOGIN_ACCOUNT.count
    # Held back account-wide now: even the right code waits, from a device never used.
    with pytest.raises(NotAuthenticated):
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


def _activated_holder(world: Runtime, clock: FixedClock, i: int) -> str:
    portal, login, code = _patient_account(world, i)
    enrol = portal.set_password(
        portal.start_activation(login, code, f"10.5.{i}.1"), PASSWORD, PASSWORD
    )
    secret = portal.enrolment(enrol).secret
    portal.confirm_enrolment(enrol, pyotp.TOTP(secret).at(clock.now()))
    return login


def test_a_recovery_started_twice_at_once_sends_one_code(world: Runtime, clock: FixedClock) -> None:
    login = _activated_holder(world, clock, 45)
    ins = ins_for(45)
    assert ins.value == login
    results = _race(N, lambda i: world.access(desk()).start_account_recovery(ins))
    started = [r for r in results if isinstance(r, Recovery)]
    assert len(started) == 1
    assert all(isinstance(r, Conflict) for r in results if not isinstance(r, Recovery))
    with world.engine.connect() as conn:
        live = conn.execute(
            sa.select(sa.func.count()).where(
                activation_codes.c.purpose == "recovery",
                activation_codes.c.used_at.is_(None),
                activation_codes.c.expires_at > world.clock.now(),
            )
        ).scalar_one()
        sent = conn.execute(
            sa.select(sa.func.count()).where(notifications.c.kind == "account_recovery")
        ).scalar_one()
    assert (live, sent) == (1, 1)


def test_a_recovery_code_used_twice_at_once_sets_one_password(
    world: Runtime, clock: FixedClock
) -> None:
    login = _activated_holder(world, clock, 46)
    ins = ins_for(46)
    world.access(desk()).start_account_recovery(ins)
    with world.engine.connect() as conn:
        [(patient_id, notice_id, sealed)] = conn.execute(
            sa.select(
                notifications.c.patient_id, notifications.c.id, notifications.c.secret_sealed
            ).where(notifications.c.kind == "account_recovery")
        ).all()
    code = envelope.open_sealed(
        world.notice_key, sealed, codes.notice_context(patient_id, notice_id)
    ).decode()
    portal = Portal(world)
    sessions = [portal.start_activation(login, code, f"10.6.0.{i}") for i in range(N)]
    new = "une nouvelle phrase de passe"
    results = _race(N, lambda i: portal.set_password(sessions[i], new, new))
    assert sum(isinstance(r, Session) for r in results) == 1
    assert all(isinstance(r, NotAuthenticated) for r in results if not isinstance(r, Session))
    with world.engine.connect() as conn:
        resets = conn.execute(
            sa.select(sa.func.count()).where(audit_events.c.action == "account.reset")
        ).scalar_one()
    assert resets == 1


@pytest.mark.postgres
def test_one_state_brought_back_twice_at_once_is_taken_once(
    world: Runtime, clock: FixedClock
) -> None:
    """Two callbacks with one state at once (a replay racing the real one): the second reads
    the pending login while the first, which already took it, has not committed; it waits on
    the row and then gets nothing (the delete that took the row decides, not the read)."""
    import threading
    import time

    from dmp.access.codes import token_hash
    from dmp.records import portal

    state = token_hash("un-etat-de-connexion")
    now = clock.now()
    with world.engine.begin() as conn:
        portal.add_oidc_login(
            conn, state, "psc", "nonce", "v" * 43, at=now, expires=now + timedelta(minutes=10)
        )
    second: list[object] = ["not run"]

    def take_second() -> None:
        with world.engine.begin() as conn:
            second[0] = portal.take_oidc_login(conn, state, "psc", now)

    with world.engine.begin() as conn:
        first = portal.take_oidc_login(conn, state, "psc", now)
        racer = threading.Thread(target=take_second)
        racer.start()
        time.sleep(0.5)  # the second has read the row and waits on its delete
    racer.join(timeout=10)
    assert first is not None
    assert second[0] is None
