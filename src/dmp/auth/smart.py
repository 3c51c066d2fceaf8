"""SMART Backend Services: API clients (a structure's software) get short-lived access tokens
with a signed client assertion (client_credentials + private_key_jwt, RS384 or ES384).

The assertion also names the acting professional (``idnatps``), the access mode
(``purpose_of_use``: normal, bris_de_glace with a ``justification`` and the ``patient`` it is
for, centre_15), as the VIHF assertion of the real DMP does. The server takes profession,
specialty and structure sector from its directory, never from the assertion (a ``role`` claim is
ignored: forbidden actors are known from the directory), and refuses a professional it does not
know or who does not work in the client's structure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from jwt import PyJWKSet

from dmp.auth import actors
from dmp.auth.throttle import TOKEN_ADDRESS, TOKEN_CLIENT, Throttle
from dmp.domain.codes import PurposeOfUse
from dmp.domain.ins import Ins, parse_ins_token
from dmp.errors import InvalidInput, NotAuthenticated
from dmp.identity.scopes import ScopeError, narrow
from dmp.identity.tokens import issue_token
from dmp.records import clients
from dmp.runtime import Runtime

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ["RS384", "ES384"]
MAX_ASSERTION_LIFETIME = timedelta(minutes=5)
MAX_JTI = 128  # the replay store's column
# One answer for an unknown client and a bad signature, one for an unknown professional and a
# professional of another structure: a caller learns nothing of who exists (issue 12).
NOT_ACCEPTED = (
    "the client assertion was not accepted: unknown client, or a signature that does not "
    "verify with its registered keys"
)
NOT_HERE = "the acting professional (idnatps) is not a professional of the client's structure"


class InvalidClient(NotAuthenticated):
    """OAuth error invalid_client / invalid_grant (HTTP 401)."""


@dataclass(frozen=True)
class TokenResponse:
    access_token: str
    expires_in: int
    scope: str


def exchange(
    rt: Runtime, *, grant_type: str, assertion_type: str, assertion: str, scope: str, token_url: str
) -> TokenResponse:
    if grant_type != "client_credentials":
        raise InvalidInput("grant_type must be client_credentials")
    if assertion_type != ASSERTION_TYPE:
        raise InvalidInput(f"client_assertion_type must be {ASSERTION_TYPE}")
    try:
        unverified = jwt.decode(assertion, options={"verify_signature": False})
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        raise InvalidClient("the client assertion is not a JWT") from None
    client_id = str(unverified.get("iss", ""))
    if header.get("alg") not in ALGORITHMS:
        raise InvalidClient("the client assertion must be signed with RS384 or ES384")
    now = rt.clock.now()
    with rt.engine.connect() as conn:
        client = clients.get(conn, client_id)
    if client is None or client.revoked_at is not None:
        raise InvalidClient(NOT_ACCEPTED)
    claims = _verify_signature(assertion, header, client.jwks, client_id, token_url, now)
    expires = datetime.fromtimestamp(int(claims["exp"]), tz=now.tzinfo)
    if expires - now > MAX_ASSERTION_LIFETIME:
        raise InvalidClient("the client assertion must expire within five minutes")
    allowed = frozenset(client.scopes.split())
    try:
        requested, answered = narrow(scope if scope.strip() else client.scopes, allowed)
    except ScopeError as exc:
        raise InvalidInput(str(exc), reason="invalid_scope") from None
    purpose_raw = str(claims.get("purpose_of_use", PurposeOfUse.NORMAL.value))
    try:
        purpose = PurposeOfUse(purpose_raw)
    except ValueError:
        raise InvalidClient(f"unknown purpose_of_use {purpose_raw[:40]!r}") from None
    justification = claims.get("justification")
    if purpose is PurposeOfUse.EMERGENCY and not (justification and str(justification).strip()):
        raise InvalidClient("bris_de_glace needs a justification in the client assertion")
    patient = _patient_claim(rt, claims.get("patient"))
    if purpose is PurposeOfUse.EMERGENCY and patient is None:
        # One justification opens one patient's record, not every record (AC-8).
        raise InvalidClient(
            "bris_de_glace needs the patient's INS in the client assertion "
            "(claim patient: urn:oid:<OID>|<INS>)"
        )
    ps = str(claims.get("idnatps", ""))
    if not ps:
        raise InvalidClient("the client assertion must name the acting professional (idnatps)")
    try:
        actor = actors.professional_actor(rt, ps, client.structure_id)
    except NotAuthenticated:  # unknown to the directory, or not in this structure
        raise InvalidClient(NOT_HERE) from None
    # Replay: the same assertion id is accepted once.
    with rt.engine.begin() as conn:
        if not clients.use_jti(conn, client_id, str(claims["jti"]), expires, now):
            raise InvalidClient("this client assertion was already used (jti replay)")
    ttl = rt.settings.token_ttl_seconds
    token = issue_token(
        actor,
        rt.token_secret,
        now=now,
        ttl_seconds=ttl,
        scopes=requested,
        purpose=purpose.value,
        justification=str(justification)[:1000] if justification else None,
        client_id=client_id,
        patient=patient,
    )
    return TokenResponse(token, ttl, answered)


class TokenEndpoint:
    """What the token endpoint may do, and nothing else: exchange a client assertion."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._throttle = Throttle(rt)

    def exchange(
        self,
        *,
        grant_type: str,
        assertion_type: str,
        assertion: str,
        scope: str,
        token_url: str,
        address: str = "unknown",
    ) -> TokenResponse:
        """Rate-limited per address and per client, for every process together (429 with
        Retry-After beyond)."""
        self._throttle.hit(TOKEN_ADDRESS, address, "too many token requests from this address")
        try:
            claimed = str(jwt.decode(assertion, options={"verify_signature": False}).get("iss"))
        except jwt.PyJWTError:
            claimed = ""
        if claimed:
            self._throttle.hit(
                TOKEN_CLIENT, claimed[:64], "too many token requests for this client"
            )
        return exchange(
            self._rt,
            grant_type=grant_type,
            assertion_type=assertion_type,
            assertion=assertion,
            scope=scope,
            token_url=token_url,
        )


def _patient_claim(rt: Runtime, value: object) -> Ins | None:
    """The ``patient`` claim binds the grant to one patient (``urn:oid:<OID>|<INS>``)."""
    if value is None:
        return None
    try:
        return parse_ins_token(str(value), test_mode=rt.settings.test_mode)
    except InvalidInput as exc:
        raise InvalidClient(f"the patient claim is not an INS: {exc.message}") from None


def _verify_signature(
    assertion: str, header: dict[str, Any], jwks: str, client_id: str, token_url: str, now: datetime
) -> dict[str, Any]:
    keyset = PyJWKSet.from_dict(json.loads(jwks))
    kid = header.get("kid")
    # Only keys of the assertion's family: an EC key never checks an RS384 signature (PyJWT
    # would fail with a type error rather than a verification error).
    family = "RSA" if str(header.get("alg", "")).startswith("RS") else "EC"
    candidates = [
        k for k in keyset.keys if (kid is None or k.key_id == kid) and k.key_type == family
    ]
    for key in candidates:
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion,
                key=key.key,
                algorithms=ALGORITHMS,
                audience=token_url,
                issuer=client_id,
                options={"require": ["exp", "iss", "sub", "jti", "aud"], "verify_exp": False},
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as exc:
            raise InvalidClient(f"client assertion rejected: {exc}") from None
        if claims.get("sub") != client_id:
            raise InvalidClient("client assertion: sub must equal iss (the client id)")
        exp = claims["exp"]
        # NumericDate (RFC 7519): a number of seconds; a string, a list or a date beyond any
        # calendar is not one.
        if isinstance(exp, bool) or not isinstance(exp, int | float) or not 0 < exp < 2**33:
            raise InvalidClient("client assertion: exp must be a NumericDate")
        if int(exp) <= int(now.timestamp()):
            raise InvalidClient("the client assertion has expired")
        jti = claims["jti"]
        if not isinstance(jti, str) or not 1 <= len(jti) <= MAX_JTI:
            raise InvalidClient(
                f"client assertion: jti must be a string of 1 to {MAX_JTI} characters"
            )
        return claims
    raise InvalidClient(NOT_ACCEPTED)
