"""Limits on attempts and failures, shared by every process and node (counted in the database).

Each limit counts something under a key: the requests of an address, the failed logins on an
account from one source, a failed bearer token from an address. A *rate* refuses the attempt
over its count within its window (429, with the seconds to wait). A *back-off* counts failures:
from its threshold on, the key is blocked for 1, 2, 4... times its base delay (at most its cap).

A stranger's failures slow the stranger: failed logins are counted per account *and* source;
the account-wide back-off (against guesses spread over many addresses) applies only to devices
the holder never logged in from, so the holder's own device keeps working with the second
factor. Keys are hashed before they are stored.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from dmp.errors import TooManyRequests
from dmp.records import throttle as store

if TYPE_CHECKING:
    from dmp.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Limit:
    name: str
    count: int  # attempts allowed per window (rate), or failures before the back-off
    window: timedelta
    base: timedelta | None = None  # back-off: the first block; None: a rate
    cap: timedelta = timedelta(hours=1)


# The portal's forms, per address (login, activation, second factor).
PORTAL_ADDRESS = Limit("portal-address", 20, timedelta(minutes=5))
# Failed logins or codes on one account from one source (address, or the device's cookie).
LOGIN_SOURCE = Limit("login-source", 5, timedelta(hours=1), base=timedelta(minutes=1))
# Failed logins on one account from every source together: blocks unknown devices only.
LOGIN_ACCOUNT = Limit("login-account", 20, timedelta(hours=1), base=timedelta(minutes=1))
# Bearer tokens that fail to verify, per address (JSON and FHIR APIs).
BEARER_ADDRESS = Limit(
    "bearer-address",
    20,
    timedelta(minutes=1),
    base=timedelta(minutes=1),
    cap=timedelta(minutes=15),
)
# The SMART token endpoint, per address and per client.
TOKEN_ADDRESS = Limit("token-address", 60, timedelta(minutes=1))
TOKEN_CLIENT = Limit("token-client", 120, timedelta(minutes=1))
# Objections to an opening (INS and birth date, public), per address.
OBJECTION_ADDRESS = Limit("objection-address", 10, timedelta(minutes=5))


def _key(limit: Limit, key: str) -> str:
    return hashlib.sha256(f"{limit.name}\x00{key}".encode()).hexdigest()


def _seconds(until: datetime, now: datetime) -> int:
    return max(1, math.ceil((until - now).total_seconds()))


class Throttle:
    """The limits, over the runtime's database and clock (one per process; stateless)."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    def hit(self, limit: Limit, key: str, message: str) -> None:
        """One attempt under a rate: refused (429) once over its count in the window."""
        now = self._rt.clock.now()
        with self._rt.engine.begin() as conn:
            counter = store.bump(conn, _key(limit, key), now=now, window=limit.window)
            if secrets.randbelow(500) == 0:  # now and then, forget what no longer counts
                store.forget_old(conn, now - timedelta(days=1), now)
        if counter.count > limit.count:
            raise TooManyRequests(message, _seconds(now + limit.window, now))

    def blocked(self, limit: Limit, key: str) -> int | None:
        """Seconds left of a back-off's block on this key (None: not blocked)."""
        now = self._rt.clock.now()
        with self._rt.engine.connect() as conn:
            until = store.blocked_until(conn, _key(limit, key))
        return _seconds(until, now) if until is not None and until > now else None

    def failure(self, limit: Limit, key: str) -> int | None:
        """One failure under a back-off; the seconds of the block it starts, if it does."""
        assert limit.base is not None, "a failure counts under a back-off"
        now = self._rt.clock.now()
        hashed = _key(limit, key)
        with self._rt.engine.begin() as conn:
            counter = store.bump(conn, hashed, now=now, window=limit.window)
            if counter.count < limit.count:
                return None
            delay = min(limit.cap, limit.base * 2 ** min(counter.count - limit.count, 20))
            until = now + delay
            store.block(conn, hashed, until)
        return _seconds(until, now)

    def clear(self, limit: Limit, key: str) -> None:
        with self._rt.engine.begin() as conn:
            store.clear(conn, _key(limit, key))


class BearerLimit:
    """Failed bearer tokens, per address, for every process together (``BEARER_ADDRESS``).

    A valid token costs nothing here: only a failure is counted in the database. An address
    whose failures reached the limit is refused (429) before any verification, in each process
    from the first failure it sees after the block began (the block itself is shared)."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._throttle = Throttle(rt)
        self._until: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def check(self, address: str) -> None:
        with self._lock:
            until = self._until.get(address)
        if until is None:
            return
        now = self._rt.clock.now()
        if until > now:
            raise TooManyRequests(BEARER_REFUSED, _seconds(until, now))
        with self._lock:
            self._until.pop(address, None)

    def failed(self, address: str) -> None:
        """One failed token; from the limit on, this address is refused for a while."""
        seconds = self._throttle.failure(BEARER_ADDRESS, address)
        if seconds is None:
            return
        with self._lock:
            if len(self._until) > 10_000:
                self._until.clear()
            self._until[address] = self._rt.clock.now() + timedelta(seconds=seconds)
        raise TooManyRequests(BEARER_REFUSED, seconds)


BEARER_REFUSED = "too many requests with an invalid bearer token from this address; retry later"
