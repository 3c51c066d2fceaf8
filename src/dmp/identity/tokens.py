"""Bearer tokens the server issues and verifies (JWT, HMAC-SHA-256 with a key-ring secret).

The token carries the actor as the directory knew it when the token was issued; it is short-lived
so a change in the directory takes effect quickly. Verification is pure CPU: no database read.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from dmp.domain.codes import PurposeOfUse
from dmp.domain.ins import Ins
from dmp.errors import NotAuthenticated
from dmp.identity.actor import Actor, ActorKind

ISSUER = "dmp"
AUDIENCE = "dmp-api"
_ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class Grant:
    """What an authenticated request may do: the actor and, for API clients, the SMART scopes,
    the access mode (purpose of use) and its justification, bound at authentication like a VIHF
    assertion. An emergency grant is bound to one patient (``patient``). The gate enforces all
    of it, whichever API the request came through; nothing else sets the purpose."""

    actor: Actor
    scopes: frozenset[str] | None = None  # None: not limited by scopes (operators, patients)
    purpose: PurposeOfUse = PurposeOfUse.NORMAL
    justification: str | None = None
    client_id: str | None = None
    patient: Ins | None = None  # the one patient this grant is for (required for emergency)
    # An app the holder allowed: "<patient key>/<authorization id>", checked live on every
    # request (the holder may withdraw it at any time).
    authorization: str | None = None


def issue_token(
    actor: Actor,
    secret: bytes,
    *,
    now: datetime,
    ttl_seconds: int,
    scopes: frozenset[str] | None = None,
    purpose: str | None = None,
    justification: str | None = None,
    client_id: str | None = None,
    patient: Ins | None = None,
    authorization: str | None = None,
) -> str:
    claims: dict[str, object] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": actor.id,
        "kind": actor.kind.value,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_seconds)).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    optional = {
        "structure": actor.structure_id,
        "profession": actor.profession,
        "specialty": actor.specialty,
        "section": actor.pharmacist_section,
        "structure_kind": actor.structure_kind,
        "ins": f"{actor.ins.oid}|{actor.ins.value}" if actor.ins else None,
        "scope": " ".join(sorted(scopes)) if scopes is not None else None,
        "purpose": purpose,
        "justification": justification,
        "client_id": client_id,
        "patient": f"{patient.oid}|{patient.value}" if patient else None,
        "authz": authorization,
    }
    claims.update({k: v for k, v in optional.items() if v is not None})
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


class _Verified:
    """Tokens already verified, with their grant and expiry (a bounded LRU, per process): a
    client sends the same token with every request, and checking its signature and claims
    again each time cost as much as a database round trip. Only successful verifications are
    kept, keyed by token and secret (a new secret verifies anew); expiry is checked on every
    use against the caller's clock."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._grants: OrderedDict[tuple[str, bytes], tuple[Grant, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, bytes]) -> tuple[Grant, int] | None:
        with self._lock:
            found = self._grants.get(key)
            if found is not None:
                self._grants.move_to_end(key)
            return found

    def put(self, key: tuple[str, bytes], grant: Grant, exp: int) -> None:
        with self._lock:
            self._grants[key] = (grant, exp)
            while len(self._grants) > self._capacity:
                self._grants.popitem(last=False)


_VERIFIED = _Verified()


_EXPIRED = "the bearer token has expired: ask the token endpoint for a new one"


class TokenExpired(NotAuthenticated):
    """A token this server signed, past its expiry: a client late to renew, not a guess."""


def verify_grant(token: str, secret: bytes, *, now: datetime) -> Grant:
    """Check signature, issuer, audience and expiry; return the grant or raise 401."""
    known = _VERIFIED.get((token, secret))
    if known is not None:
        grant, exp = known
        if exp <= int(now.timestamp()):
            raise TokenExpired(_EXPIRED)
        return grant
    grant, exp = _verify(token, secret, now=now)
    _VERIFIED.put((token, secret), grant, exp)
    return grant


def _verify(token: str, secret: bytes, *, now: datetime) -> tuple[Grant, int]:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "kind", "jti"], "verify_exp": False},
        )
    except jwt.InvalidSignatureError:
        raise NotAuthenticated(
            "the bearer token was not signed by this server: ask its token endpoint "
            "(/fhir/auth/token) for one"
        ) from None
    except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):
        raise NotAuthenticated("the bearer token was issued for another server") from None
    except jwt.MissingRequiredClaimError as exc:
        raise NotAuthenticated(f"the bearer token lacks the claim {exc.claim!r}") from None
    except jwt.DecodeError:
        raise NotAuthenticated("the bearer token is not a JWT this server issued") from None
    except jwt.PyJWTError:
        raise NotAuthenticated("the bearer token is invalid") from None
    exp = claims["exp"]
    # NumericDate (RFC 7519): seconds as a number; "soon", a list or a bool is not one.
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not 0 < exp < 2**33:
        raise NotAuthenticated("the bearer token's exp is not a NumericDate")
    # Expiry is checked against the injected clock, so tests control time.
    if int(exp) <= int(now.timestamp()):
        raise TokenExpired(_EXPIRED)
    try:
        kind = ActorKind(claims["kind"])
    except ValueError:
        raise NotAuthenticated("the bearer token is invalid") from None
    if kind is ActorKind.SYSTEM:
        raise NotAuthenticated("system actors do not authenticate over HTTP")
    try:
        purpose = PurposeOfUse(claims.get("purpose") or PurposeOfUse.NORMAL.value)
    except ValueError:
        raise NotAuthenticated("the bearer token is invalid") from None
    ins = _ins_claim(claims.get("ins"))
    actor = Actor(
        kind=kind,
        id=str(claims["sub"]),
        structure_id=claims.get("structure"),
        profession=claims.get("profession"),
        specialty=claims.get("specialty"),
        pharmacist_section=claims.get("section"),
        structure_kind=claims.get("structure_kind"),
        ins=ins,
    )
    scope = claims.get("scope")
    grant = Grant(
        actor=actor,
        scopes=frozenset(str(scope).split()) if scope is not None else None,
        purpose=purpose,
        justification=claims.get("justification"),
        client_id=claims.get("client_id"),
        patient=_ins_claim(claims.get("patient")),
        authorization=str(claims["authz"]) if claims.get("authz") else None,
    )
    return grant, int(claims["exp"])


def _ins_claim(value: object) -> Ins | None:
    if value is None:
        return None
    oid, _, ins = str(value).partition("|")
    return Ins(oid=oid, value=ins)
