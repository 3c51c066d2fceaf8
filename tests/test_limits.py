"""Limits that cannot be turned against the holder (issue 21, item 5).

Before this issue, six wrong passwords from anyone who knew an INS locked the holder out, the
per-address limit believed ``X-Forwarded-For`` from any peer, bad bearer tokens were never
throttled, and every limit was counted per process. Each test below failed then.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pyotp
import pytest
from fastapi.testclient import TestClient

from dmp.app import create_app
from dmp.auth import actors
from dmp.auth.portal import FULL, SECOND, Portal
from dmp.auth.throttle import BEARER_ADDRESS, LOGIN_ACCOUNT, LOGIN_SOURCE, PORTAL_ADDRESS
from dmp.clock import FixedClock
from dmp.config import Settings
from dmp.domain.net import client_address
from dmp.errors import NotAuthenticated, TooManyRequests
from dmp.runtime import Runtime
from tests.factories import GP, desk, ins_for, load_directory, open_record, pro
from tests.portal_helpers import get, post_form

PASSWORD = "une phrase de passe assez longue"


def _activated(rt: Runtime, clock: FixedClock, i: int) -> tuple[str, str, str | None]:
    """An activated holder: (login, TOTP secret, the device token of the activating browser)."""
    ins = ins_for(i)
    open_record(rt, ins)
    letter = rt.access(desk()).issue_activation_code(ins)
    portal = Portal(rt)
    enrol = portal.set_password(
        portal.start_activation(letter.login, letter.code, "192.0.2.1"), PASSWORD, PASSWORD
    )
    secret = portal.enrolment(enrol).secret
    full, _ = portal.confirm_enrolment(enrol, pyotp.TOTP(secret).at(clock.now()))
    return letter.login, secret, full.device


def _totp(secret: str, clock: FixedClock) -> str:
    return pyotp.TOTP(secret).at(clock.now())


def test_a_strangers_failures_do_not_lock_the_holder_out(world: Runtime, clock: FixedClock) -> None:
    login, secret, _ = _activated(world, clock, 1)
    portal = Portal(world)
    for _ in range(LOGIN_SOURCE.count + 1):  # the attack: six wrong passwords
        with pytest.raises(NotAuthenticated):
            portal.login(login, "pas le bon mot de passe", "203.0.113.66")
    # The stranger's address is held back, even with the right password...
    with pytest.raises(NotAuthenticated):
        portal.login(login, PASSWORD, "203.0.113.66")
    # ...the holder, elsewhere, is not.
    clock.advance(timedelta(seconds=30))
    second = portal.login(login, PASSWORD, "198.51.100.7")
    assert portal.second_factor(second, _totp(secret, clock), "198.51.100.7").stage == FULL


def test_guesses_spread_over_many_addresses_spare_the_holders_device(
    world: Runtime, clock: FixedClock
) -> None:
    login, secret, device = _activated(world, clock, 2)
    assert device
    portal = Portal(world)
    for n in range(LOGIN_ACCOUNT.count):  # one guess from each of many addresses
        with pytest.raises(NotAuthenticated):
            portal.login(login, "pas le bon mot de passe", f"203.0.113.{n + 1}")
    # The account is held back for devices it never used, whatever the address...
    with pytest.raises(NotAuthenticated):
        portal.login(login, PASSWORD, "198.51.100.8")
    # ...but the holder's own device logs in, second factor included.
    clock.advance(timedelta(seconds=30))
    second = portal.login(login, PASSWORD, "198.51.100.8", device)
    assert second.stage == SECOND
    full = portal.second_factor(second, _totp(secret, clock), "198.51.100.8", device)
    assert full.stage == FULL and full.device is None  # the device is known: no new token
    # A device token of another account is no pass.
    _, _, other_device = _activated(world, clock, 3)
    with pytest.raises(NotAuthenticated):
        portal.login(login, PASSWORD, "198.51.100.8", other_device)


def test_wrong_codes_from_a_stranger_do_not_lock_the_holder_out(
    world: Runtime, clock: FixedClock
) -> None:
    login, secret, _ = _activated(world, clock, 4)
    portal = Portal(world)
    for _ in range(LOGIN_SOURCE.count + 2):
        with pytest.raises(NotAuthenticated):
            portal.start_activation(login, "AAAA-BBBB-CCCC", "203.0.113.70")
    clock.advance(timedelta(seconds=30))
    second = portal.login(login, PASSWORD, "198.51.100.9")
    assert portal.second_factor(second, _totp(secret, clock), "198.51.100.9").stage == FULL


def test_limits_are_shared_by_every_process(
    world: Runtime, settings: Settings, clock: FixedClock
) -> None:
    """Two runtimes on one database stand for two server processes (or nodes)."""
    other = Runtime.start(settings, clock=clock)
    try:
        first, second = Portal(world), Portal(other)
        for n in range(PORTAL_ADDRESS.count):
            with pytest.raises(NotAuthenticated):
                (first if n % 2 else second).login("personne", "mauvais", "203.0.113.90")
        for portal in (first, second):
            with pytest.raises(TooManyRequests):
                portal.login("personne", "mauvais", "203.0.113.90")
    finally:
        other.close()


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    assert client_address("203.0.113.5", "198.51.100.1", "") == "203.0.113.5"
    assert client_address("203.0.113.5", "198.51.100.1", "10.0.0.0/8") == "203.0.113.5"
    assert client_address("10.0.0.2", "198.51.100.1", "10.0.0.0/8") == "198.51.100.1"
    # Right to left: a client-written hop before the last proxy's is not believed.
    chain = "1.2.3.4, 198.51.100.1, 10.0.0.3"
    assert client_address("10.0.0.2", chain, "10.0.0.0/8") == "198.51.100.1"
    assert client_address("10.0.0.2", "not-an-address", "10.0.0.0/8") == "10.0.0.2"
    assert client_address("10.0.0.2", "10.0.0.9", "10.0.0.0/8") == "10.0.0.2"


def _login_page_posts(client: TestClient, forwarded: list[str]) -> list[int]:
    statuses = []
    for address in forwarded:
        form = get(client, "/portail/connexion")
        client.headers["X-Forwarded-For"] = address
        r = post_form(client, "/portail/connexion", form, identifiant="x", mot_de_passe="y")
        statuses.append(r.status_code)
    return statuses


def test_rotating_forwarded_addresses_from_an_untrusted_peer_are_one_address(
    world: Runtime,
) -> None:
    with TestClient(create_app(world), client=("203.0.113.10", 5000)) as client:
        statuses = _login_page_posts(client, [f"198.51.100.{n}" for n in range(25)])
    assert statuses[: PORTAL_ADDRESS.count] == [401] * PORTAL_ADDRESS.count
    assert set(statuses[PORTAL_ADDRESS.count :]) == {429}


def test_behind_a_trusted_proxy_each_client_is_counted_apart(
    settings: Settings, clock: FixedClock
) -> None:
    rt = Runtime.start(settings.model_copy(update={"trusted_proxies": "10.0.0.0/8"}), clock=clock)
    try:
        load_directory(rt)
        with TestClient(create_app(rt), client=("10.0.0.2", 5000)) as client:
            statuses = _login_page_posts(client, [f"198.51.100.{n}" for n in range(25)])
            assert set(statuses) == {401}
            same = _login_page_posts(client, ["198.51.100.200"] * (PORTAL_ADDRESS.count + 1))
        assert same[-1] == 429
    finally:
        rt.close()


@pytest.fixture
def api(world: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(world), client=("203.0.113.20", 5000)) as c:
        yield c


def test_expired_tokens_are_not_counted_as_guesses(
    world: Runtime, api: TestClient, clock: FixedClock
) -> None:
    """A client late to renew its token is told so, every time, and never throttled: an
    expired token was signed by this server, it is no guess."""
    ins = ins_for(6)
    open_record(world, ins)
    url = f"/api/records/{ins.value}?oid={ins.oid}"
    token = actors.token_for(world, pro(world, GP), ttl_seconds=60)
    clock.advance(timedelta(minutes=2))
    statuses = {
        api.get(url, headers={"Authorization": f"Bearer {token}"}).status_code
        for _ in range(BEARER_ADDRESS.count * 2)
    }
    assert statuses == {401}
    fresh = actors.token_for(world, pro(world, GP))
    assert api.get(url, headers={"Authorization": f"Bearer {fresh}"}).status_code in (200, 403)


def test_bad_bearer_tokens_are_throttled_per_address(world: Runtime, api: TestClient) -> None:
    ins = ins_for(5)
    open_record(world, ins)
    url = f"/api/records/{ins.value}?oid={ins.oid}"
    statuses = [
        api.get(url, headers={"Authorization": f"Bearer not-a-token-{n}"}).status_code
        for n in range(300)
    ]
    assert statuses[: BEARER_ADDRESS.count - 1] == [401] * (BEARER_ADDRESS.count - 1)
    assert statuses[BEARER_ADDRESS.count - 1 :] == [429] * (301 - BEARER_ADDRESS.count)
    limited = api.get(url, headers={"Authorization": "Bearer again"})
    assert int(limited.headers["Retry-After"]) > 0
    # From the blocked address even a good token waits (nothing is verified there); from
    # another address it works.
    token = actors.token_for(world, pro(world, GP))
    good = {"Authorization": f"Bearer {token}"}
    assert api.get(url, headers=good).status_code == 429
    with TestClient(create_app(world), client=("198.51.100.30", 5000)) as other:
        assert other.get(url, headers=good).status_code in (200, 403)
        # The block is in the database: a new process (application) refuses the address too,
        # from the first bad token it sees.
    with TestClient(create_app(world), client=("203.0.113.20", 5000)) as again:
        assert again.get(url, headers={"Authorization": "Bearer x"}).status_code == 429
        assert again.get(url, headers=good).status_code == 429
