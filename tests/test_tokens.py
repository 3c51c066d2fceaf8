"""Bearer tokens: a token verified once is remembered, never beyond its expiry or its secret."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dmp.errors import NotAuthenticated
from dmp.identity.actor import Actor, ActorKind
from dmp.identity.tokens import issue_token, verify_grant

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SECRET = b"s" * 32
ACTOR = Actor(kind=ActorKind.PROFESSIONAL, id="810000000001", structure_id="S1", profession="10")


def test_a_remembered_token_still_expires() -> None:
    token = issue_token(ACTOR, SECRET, now=NOW, ttl_seconds=60)
    assert verify_grant(token, SECRET, now=NOW).actor == ACTOR
    assert verify_grant(token, SECRET, now=NOW + timedelta(seconds=59)).actor == ACTOR
    with pytest.raises(NotAuthenticated, match="expired"):
        verify_grant(token, SECRET, now=NOW + timedelta(seconds=60))


def test_a_remembered_token_needs_its_secret_and_its_exact_text() -> None:
    token = issue_token(ACTOR, SECRET, now=NOW, ttl_seconds=60)
    verify_grant(token, SECRET, now=NOW)
    with pytest.raises(NotAuthenticated, match="not signed by this server"):
        verify_grant(token, b"t" * 32, now=NOW)  # the ring's secret changed
    with pytest.raises(NotAuthenticated, match="not signed by this server"):
        verify_grant(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1], SECRET, now=NOW)


def test_a_401_says_why() -> None:
    """Expired, signed elsewhere, not a JWT at all: three different answers."""
    import jwt

    token = issue_token(ACTOR, SECRET, now=NOW, ttl_seconds=60)
    with pytest.raises(NotAuthenticated, match="expired: ask the token endpoint"):
        verify_grant(token, SECRET, now=NOW + timedelta(hours=1))
    claims = jwt.decode(token, options={"verify_signature": False})
    elsewhere = jwt.encode(claims, b"another server's secret, long enough", algorithm="HS256")
    with pytest.raises(NotAuthenticated, match="not signed by this server"):
        verify_grant(elsewhere, SECRET, now=NOW)
    with pytest.raises(NotAuthenticated, match="not a JWT"):
        verify_grant("abc.def", SECRET, now=NOW)
    other_audience = jwt.encode({**claims, "aud": "another-api"}, SECRET, algorithm="HS256")
    with pytest.raises(NotAuthenticated, match="issued for another server"):
        verify_grant(other_audience, SECRET, now=NOW)
