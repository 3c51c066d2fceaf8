"""OpenID Connect relying party: logging into the portals through Pro Santé Connect
(professionals) and FranceConnect (holders), each configured by its issuer URL.

The authorization code flow with PKCE (S256), a state and a nonce, as both providers require:
the state is kept server-side (``oidc_logins``, its SHA-256) and in a cookie of the browser that
started the login, and is used once; the ID token's signature is checked against the keys the
provider publishes (its discovery document's ``jwks_uri``), with its issuer, audience,
authorized party, expiry, nonce and authentication level (``acr``). The identity then comes from
the userinfo endpoint (JSON, or a JWT signed with the same keys), whose ``sub`` must be the ID
token's. What each provider's identity opens is decided by the portal (``dmp.auth.portal``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from jwt import PyJWKClient, PyJWKClientError

from dmp.config import Settings
from dmp.errors import NotAuthenticated

PSC = "psc"
FRANCECONNECT = "franceconnect"
LOGIN_WINDOW = timedelta(minutes=10)  # from the redirect to the provider back to dmp
_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
_DISCOVERY_SECONDS = 3600
_TIMEOUT = 10.0
_LEEWAY = 30  # seconds of clock difference with the provider


class LoginRefused(NotAuthenticated):
    """A login through a provider that did not go through (said in French on the page)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, french=message)


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str  # psc | franceconnect
    issuer: str
    client_id: str
    client_secret: str
    scopes: str
    acr: tuple[str, ...]


def configured(settings: Settings) -> dict[str, ProviderConfig]:
    """The providers the portal offers: those whose issuer is set."""
    out: dict[str, ProviderConfig] = {}
    if settings.psc_issuer:
        out[PSC] = ProviderConfig(
            PSC,
            settings.psc_issuer,
            settings.psc_client_id,
            settings.psc_client_secret,
            settings.psc_scopes,
            tuple(settings.psc_acr.split()),
        )
    if settings.fc_issuer:
        out[FRANCECONNECT] = ProviderConfig(
            FRANCECONNECT,
            settings.fc_issuer,
            settings.fc_client_id,
            settings.fc_client_secret,
            settings.fc_scopes,
            tuple(settings.fc_acr.split()),
        )
    return out


@dataclass(frozen=True, slots=True)
class Started:
    """A login sent to the provider: where to send the browser, and the state to keep."""

    url: str
    state: str
    nonce: str
    verifier: str


@dataclass(frozen=True, slots=True)
class Identity:
    """What the provider vouched for: the ID token's claims and the userinfo claims."""

    provider: str
    subject: str
    acr: str | None
    id_token: str  # kept in the session for the logout at the provider (id_token_hint)
    claims: dict[str, Any]


def challenge_of(verifier: str) -> str:
    """PKCE S256 (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OidcProvider:
    """One provider: its discovery document and keys (fetched, then kept an hour), the
    authorization request, the code exchange and the checks."""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._fetched = 0.0
        self._keys: PyJWKClient | None = None

    # -- discovery --------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        with self._lock:
            if self._metadata is not None and time.monotonic() - self._fetched < _DISCOVERY_SECONDS:
                return self._metadata
        url = f"{self.config.issuer}/.well-known/openid-configuration"
        data = _get_json(url)
        # OpenID Connect Discovery §4.3: the issuer it states is the one configured, exactly.
        if data.get("issuer") != self.config.issuer:
            raise LoginRefused("le fournisseur d'identité ne se présente pas sous l'adresse prévue")
        for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(data.get(field), str):
                raise LoginRefused("le fournisseur d'identité ne décrit pas ses adresses")
        with self._lock:
            self._metadata = data
            self._fetched = time.monotonic()
            self._keys = PyJWKClient(
                str(data["jwks_uri"]), cache_keys=True, lifespan=_DISCOVERY_SECONDS, timeout=10
            )
        return data

    def _signing_key(self, token: str) -> Any:
        self.metadata()
        assert self._keys is not None
        try:
            return self._keys.get_signing_key_from_jwt(token).key
        except (PyJWKClientError, jwt.PyJWTError):
            raise LoginRefused(
                "la signature du jeton d'identité ne correspond à aucune clé du fournisseur"
            ) from None

    # -- the flow ---------------------------------------------------------------------------

    def start(self, redirect_uri: str) -> Started:
        meta = self.metadata()
        state = secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)
        params = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "scope": self.config.scopes,
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge_of(verifier),
            "code_challenge_method": "S256",
        }
        if self.config.acr:
            params["acr_values"] = " ".join(self.config.acr)
        url = f"{meta['authorization_endpoint']}?{urlencode(params)}"
        return Started(url, state, nonce, verifier)

    def finish(self, code: str, redirect_uri: str, nonce: str, verifier: str) -> Identity:
        """The code exchanged for tokens, the ID token checked, the userinfo read."""
        meta = self.metadata()
        try:
            answer = httpx.post(
                str(meta["token_endpoint"]),
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": redirect_uri,
                    "code_verifier": verifier,
                },
                auth=(self.config.client_id, self.config.client_secret),
                headers={"accept": "application/json"},
                timeout=_TIMEOUT,
            )
        except httpx.HTTPError:
            raise LoginRefused("le fournisseur d'identité ne répond pas") from None
        if answer.status_code != 200:
            raise LoginRefused("le fournisseur d'identité a refusé le code de connexion")
        try:
            tokens = answer.json()
        except ValueError:
            raise LoginRefused("le fournisseur d'identité a mal répondu") from None
        id_token = tokens.get("id_token") if isinstance(tokens, dict) else None
        access_token = tokens.get("access_token") if isinstance(tokens, dict) else None
        if not isinstance(id_token, str) or not isinstance(access_token, str):
            raise LoginRefused("le fournisseur d'identité n'a pas remis de jeton d'identité")
        claims = self.check_id_token(id_token, nonce)
        userinfo = self.userinfo(access_token, str(claims["sub"]))
        acr = claims.get("acr")
        return Identity(
            self.config.name,
            str(claims["sub"]),
            str(acr) if acr is not None else None,
            id_token,
            {**userinfo, **{k: v for k, v in claims.items() if k not in userinfo}},
        )

    def check_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        """OpenID Connect Core §3.1.3.7: signature with the provider's published keys, issuer,
        audience (this client), authorized party, expiry and issue time, nonce; then the
        authentication level."""
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise LoginRefused("le jeton d'identité est illisible") from None
        if header.get("alg") not in _ALGORITHMS:
            raise LoginRefused("le jeton d'identité n'est pas signé comme il doit l'être")
        key = self._signing_key(id_token)
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key=key,
                algorithms=_ALGORITHMS,
                audience=self.config.client_id,
                issuer=self.config.issuer,
                leeway=_LEEWAY,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.InvalidSignatureError:
            raise LoginRefused(
                "la signature du jeton d'identité ne correspond à aucune clé du fournisseur"
            ) from None
        except jwt.InvalidAudienceError:
            raise LoginRefused("le jeton d'identité a été délivré pour un autre service") from None
        except jwt.InvalidIssuerError:
            raise LoginRefused("le jeton d'identité vient d'un autre fournisseur") from None
        except jwt.ExpiredSignatureError:
            raise LoginRefused("le jeton d'identité a expiré") from None
        except jwt.PyJWTError:
            raise LoginRefused("le jeton d'identité n'est pas valable") from None
        several = isinstance(claims["aud"], list) and len(claims["aud"]) > 1
        # Core §3.1.3.7 (4, 5): with several audiences, or an azp at all, azp is dmp's client.
        if (several or "azp" in claims) and claims.get("azp") != self.config.client_id:
            raise LoginRefused("le jeton d'identité a été délivré pour un autre service")
        sent = claims.get("nonce")
        if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
            raise LoginRefused(
                "le jeton d'identité ne répond pas à cette demande de connexion (nonce)"
            )
        if self.config.acr and claims.get("acr") not in self.config.acr:
            raise LoginRefused(
                "le niveau d'authentification du fournisseur d'identité est insuffisant "
                f"(attendu : {', '.join(self.config.acr)})"
            )
        return claims

    def userinfo(self, access_token: str, subject: str) -> dict[str, Any]:
        """The userinfo endpoint's claims (JSON, or a JWT signed with the provider's keys);
        its ``sub`` must be the ID token's (Core §5.3.2). No endpoint: the ID token alone."""
        endpoint = self.metadata().get("userinfo_endpoint")
        if not isinstance(endpoint, str):
            return {}
        try:
            answer = httpx.get(
                endpoint, headers={"authorization": f"Bearer {access_token}"}, timeout=_TIMEOUT
            )
        except httpx.HTTPError:
            raise LoginRefused("le fournisseur d'identité ne répond pas") from None
        if answer.status_code != 200:
            raise LoginRefused("le fournisseur d'identité n'a pas transmis l'identité")
        kind = answer.headers.get("content-type", "").split(";")[0].strip()
        try:
            if kind == "application/jwt":
                token = answer.text.strip()
                data = jwt.decode(
                    token,
                    key=self._signing_key(token),
                    algorithms=_ALGORITHMS,
                    audience=self.config.client_id,
                    issuer=self.config.issuer,
                    leeway=_LEEWAY,
                    options={"require": ["sub"], "verify_aud": "aud" in _peek(token)},
                )
            else:
                data = answer.json()
        except (ValueError, jwt.PyJWTError):
            raise LoginRefused("le fournisseur d'identité a mal transmis l'identité") from None
        if not isinstance(data, dict) or data.get("sub") != subject:
            raise LoginRefused("l'identité transmise ne correspond pas au jeton d'identité")
        return data

    def logout_url(self, id_token: str, post_logout_redirect_uri: str) -> str | None:
        """RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): where to send the
        browser so the person is logged out at the provider too; None if it has no such
        endpoint."""
        try:
            endpoint = self.metadata().get("end_session_endpoint")
        except NotAuthenticated:
            return None
        if not isinstance(endpoint, str):
            return None
        params = {
            "id_token_hint": id_token,
            "post_logout_redirect_uri": post_logout_redirect_uri,
            "state": secrets.token_urlsafe(16),
        }
        return f"{endpoint}?{urlencode(params)}"


def _peek(token: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims


def _get_json(url: str) -> dict[str, Any]:
    try:
        answer = httpx.get(url, timeout=_TIMEOUT, headers={"accept": "application/json"})
        answer.raise_for_status()
        data = answer.json()
    except (httpx.HTTPError, ValueError):
        raise LoginRefused("le fournisseur d'identité ne répond pas") from None
    if not isinstance(data, dict):
        raise LoginRefused("le fournisseur d'identité a mal répondu")
    return data


def expires(now: datetime) -> datetime:
    return now + LOGIN_WINDOW
