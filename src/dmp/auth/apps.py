"""dmp as a SMART App Launch v2 authorization server for apps a holder allows (standalone
patient launch, public clients, authorization code with PKCE S256; docs/api.md, "Apps the
patient allows").

Apps come from the catalogue (``dmp app add``: a name, a publisher, exact redirect addresses,
the ``patient/`` scopes they may ask). The holder, logged into the portal, sees what the app asks
in French and allows it or not; allowing is the gate's ``allow_app`` (in the record's trail),
which stores the one-time code's hash with the app, the redirect address and the PKCE
challenge. The token endpoint then exchanges that code once for a short access token (the
holder's actor, the app's client id, the ``user/`` scopes the gate checks, bound to the holder's
record and to the authorization, which the gate reads at every action) and, with
``offline_access``, a refresh token rotated at each use. A code or refresh token used twice ends
the authorization (RFC 9700 §4.14: a replay means a leak).
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode, urlsplit

from dmp.access.apps import PendingCode
from dmp.access.codes import token_hash
from dmp.access.record_access import RecordAccess
from dmp.auth import actors
from dmp.auth.oidc import challenge_of
from dmp.auth.throttle import TOKEN_ADDRESS, TOKEN_CLIENT, Throttle
from dmp.domain.ins import Ins, PatientKey
from dmp.errors import BadRequest, DmpError
from dmp.identity.actor import Actor, ActorKind, system_actor
from dmp.identity.scopes import AppGrant, ScopeError, narrow_app
from dmp.identity.tokens import issue_token
from dmp.records import apps
from dmp.runtime import Runtime

CODE_LIFETIME = timedelta(seconds=60)
REFRESH_LIFETIME = timedelta(days=90)
_PKCE = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url of a SHA-256, unpadded
_INVALID_GRANT = "the code or refresh token is unknown, expired, already used or withdrawn"

# The scopes as the consent page says them (patient/<resource>.rs).
SCOPE_WORDS = {
    "DocumentReference": "la liste de vos documents et leur description",
    "Binary": "le contenu de vos documents",
    "List": "les lots et dossiers de documents",
    "Patient": "votre identité et l'état de votre dossier",
    "Consent": "les professionnels que vous avez autorisés ou bloqués",
    "AuditEvent": "l'historique des accès à votre dossier",
    "*": "tout votre dossier",
}


def scope_words(scopes: list[str] | tuple[str, ...]) -> list[str]:
    """An app's scopes as people read them ("lire le contenu de vos documents"), one line a
    scope, for the consent page and the list of apps alike."""
    out = []
    for scope in sorted(scopes):
        if scope.startswith("patient/"):
            resource, _, verbs = scope.removeprefix("patient/").partition(".")
            what = SCOPE_WORDS.get(resource, resource)
            out.append(f"lire {what}" if "r" in verbs else f"rechercher dans {what}")
    if "offline_access" in scopes:
        out.append("garder cet accès quand vous n'êtes pas connecté (jusqu'au retrait)")
    return out


class OAuthError(DmpError):
    """An OAuth error answer (RFC 6749 §5.2): ``error`` is the OAuth code."""

    status = 400

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description, reason=error)
        self.error = error
        self.status = status


class RedirectError(DmpError):
    """An authorization request error told to the app at its (verified) redirect address
    (RFC 6749 §4.1.2.1)."""

    status = 303

    def __init__(self, location: str) -> None:
        super().__init__("redirected to the app with an error")
        self.location = location


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    """An app's authorization request, checked: what the consent page shows and the portal
    posts back."""

    client_id: str
    name: str
    publisher: str
    redirect_uri: str
    state: str
    challenge: str
    grant: AppGrant

    def words(self) -> list[str]:
        """What the app may read, in French, one line a scope."""
        return scope_words(self.grant.answer.split())


@dataclass(frozen=True, slots=True)
class TokenAnswer:
    access_token: str
    expires_in: int
    scope: str
    patient: str  # the record's key, FHIR Patient.id
    refresh_token: str | None


def _with_params(uri: str, params: dict[str, str]) -> str:
    return f"{uri}{'&' if urlsplit(uri).query else '?'}{urlencode(params)}"


def redirect_uri_ok(uri: str) -> bool:
    """A redirect address an app may register: https, or http on loopback (a native app,
    RFC 8252 §7.3), or a private scheme (com.example.app:/callback, RFC 8252 §7.1); no
    fragment."""
    parts = urlsplit(uri)
    if parts.fragment or not parts.scheme:
        return False
    if parts.scheme == "https":
        return bool(parts.hostname)
    if parts.scheme == "http":
        return parts.hostname in ("127.0.0.1", "localhost", "::1")
    return "." in parts.scheme and not parts.netloc


class AppServer:
    """The authorization server's rules (one per process)."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._throttle = Throttle(rt)
        self._lock = threading.Lock()
        self._seen: dict[str, datetime] = {}

    # -- the catalogue ----------------------------------------------------------------------

    def register(self, *, name: str, publisher: str, redirect_uris: list[str], scopes: str) -> str:
        """An app joins the catalogue (operator command); returns its client id."""
        name, publisher = name.strip(), publisher.strip()
        if not name or len(name) > 200 or not publisher or len(publisher) > 200:
            raise BadRequest("an app has a name and a publisher (200 characters at most)")
        if not redirect_uris or not all(redirect_uri_ok(u) for u in redirect_uris):
            raise BadRequest(
                "redirect addresses are https://, http:// on loopback, or a private scheme "
                "(com.example.app:/callback), without fragment"
            )
        try:
            granted = narrow_app(scopes, frozenset(scopes.split()))
        except ScopeError as exc:
            raise BadRequest(str(exc)) from None
        client_id = f"app-{secrets.token_hex(8)}"
        with self._rt.engine.begin() as conn:
            apps.add_app(
                conn,
                {
                    "client_id": client_id,
                    "name": name,
                    "publisher": publisher,
                    "redirect_uris": " ".join(redirect_uris),
                    "scopes": " ".join(sorted(granted.answer.split())),
                    "created_at": self._rt.clock.now(),
                },
            )
        return client_id

    def catalogue(self) -> list[apps.AppRow]:
        with self._rt.engine.connect() as conn:
            return apps.list_apps(conn)

    def withdraw(self, client_id: str) -> bool:
        with self._rt.engine.begin() as conn:
            return apps.withdraw_app(conn, client_id, self._rt.clock.now())

    # -- the authorization request (the portal's pages) -----------------------------------

    def check_request(self, params: dict[str, str], fhir_base: str) -> AuthorizeRequest:
        """The authorization request checked. Before the redirect address is known good, an
        error is a page (BadRequest: never send anyone to an address the app did not
        register); after, it goes back to the app (RedirectError)."""
        client_id = params.get("client_id", "")
        with self._rt.engine.connect() as conn:
            app = apps.get_app(conn, client_id[:64]) if client_id else None
        if app is None or app.revoked_at is not None:
            raise BadRequest("cette application n'est pas (ou plus) au catalogue du service")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in app.redirect_uris:
            raise BadRequest("l'adresse de retour demandée n'est pas celle de cette application")
        state = params.get("state", "")

        def back(error: str, description: str) -> RedirectError:
            answer = {"error": error, "error_description": description}
            if state:
                answer["state"] = state
            return RedirectError(_with_params(redirect_uri, answer))

        if params.get("response_type") != "code":
            raise back("unsupported_response_type", "response_type must be code")
        if not state or len(state) > 500:
            raise back("invalid_request", "a state of 1 to 500 characters is required")
        if params.get("code_challenge_method") != "S256":
            raise back("invalid_request", "PKCE is required, with code_challenge_method S256")
        challenge = params.get("code_challenge", "")
        if not _CHALLENGE.match(challenge):
            raise back("invalid_request", "code_challenge must be a base64url SHA-256")
        if params.get("aud", "").rstrip("/") != fhir_base.rstrip("/"):
            raise back("invalid_request", f"aud must be this FHIR server: {fhir_base}")
        try:
            grant = narrow_app(params.get("scope", ""), frozenset(app.scopes.split()))
        except ScopeError as exc:
            raise back("invalid_scope", str(exc)) from None
        return AuthorizeRequest(
            app.client_id, app.name, app.publisher, redirect_uri, state, challenge, grant
        )

    def approve(self, gate: RecordAccess, ins: Ins, request: AuthorizeRequest) -> str:
        """The holder allowed the app: the authorization and its code (the gate), and where
        to send the browser back to the app."""
        code = secrets.token_urlsafe(32)
        gate.allow_app(
            ins,
            request.client_id,
            request.grant.answer,
            PendingCode(
                token_hash(code),
                request.redirect_uri,
                request.challenge,
                self._rt.clock.now() + CODE_LIFETIME,
            ),
        )
        return _with_params(request.redirect_uri, {"code": code, "state": request.state})

    @staticmethod
    def refusal(request: AuthorizeRequest) -> str:
        return _with_params(
            request.redirect_uri,
            {
                "error": "access_denied",
                "error_description": "the holder did not allow the app",
                "state": request.state,
            },
        )

    # -- the token endpoint -------------------------------------------------------------------

    def token(self, form: dict[str, str], address: str) -> TokenAnswer:
        """``grant_type=authorization_code`` or ``refresh_token`` from a public app (its
        client_id in the form); limited per address and per app like every token request."""
        self._throttle.hit(TOKEN_ADDRESS, address, "too many token requests from this address")
        client_id = form.get("client_id", "")[:64]
        if client_id:
            self._throttle.hit(TOKEN_CLIENT, client_id, "too many token requests for this client")
        with self._rt.engine.connect() as conn:
            app = apps.get_app(conn, client_id) if client_id else None
        if app is None or app.revoked_at is not None:
            raise OAuthError("invalid_client", "unknown app, or withdrawn from the catalogue", 401)
        if form.get("grant_type") == "authorization_code":
            return self._exchange_code(app, form)
        if form.get("grant_type") == "refresh_token":
            return self._refresh(app, form)
        raise OAuthError(
            "unsupported_grant_type", "grant_type must be authorization_code or refresh_token"
        )

    def _exchange_code(self, app: apps.AppRow, form: dict[str, str]) -> TokenAnswer:
        code, verifier = form.get("code", ""), form.get("code_verifier", "")
        if not code or len(code) > 200:
            raise OAuthError("invalid_request", "code is required")
        if not _PKCE.match(verifier):
            raise OAuthError("invalid_request", "code_verifier (43 to 128 characters) is required")
        now = self._rt.clock.now()
        with self._rt.engine.begin() as conn:
            found, used_now = apps.take_code(conn, token_hash(code), now)
        if found is not None and not used_now:
            # A code used twice: whoever used it first may not be the app (RFC 6749 §4.1.2).
            self._end(found.patient_id, found.authorization_id)
        if found is None or not used_now or found.expires_at < now:
            raise OAuthError("invalid_grant", _INVALID_GRANT)
        if found.client_id != app.client_id or found.redirect_uri != form.get("redirect_uri"):
            raise OAuthError("invalid_grant", "the code was issued to another app or address")
        if not hmac.compare_digest(challenge_of(verifier), found.challenge):
            raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
        return self._tokens(app, found.patient_id, found.authorization_id, old_refresh=None)

    def _refresh(self, app: apps.AppRow, form: dict[str, str]) -> TokenAnswer:
        token = form.get("refresh_token", "")
        patient_id, _, rest = token.partition(".")
        authorization_id, _, secret = rest.partition(".")
        if not (patient_id and authorization_id and secret) or len(token) > 200:
            raise OAuthError("invalid_grant", _INVALID_GRANT)
        now = self._rt.clock.now()
        with self._rt.engine.connect() as conn:
            found = apps.get_authorization(conn, patient_id, authorization_id)
        if found is None or found.client_id != app.client_id or found.revoked_at is not None:
            raise OAuthError("invalid_grant", _INVALID_GRANT)
        if found.refresh_hash is None or not hmac.compare_digest(
            found.refresh_hash, token_hash(token)
        ):
            # An old refresh token again: it leaked, or a copy of the app runs elsewhere.
            self._end(patient_id, authorization_id)
            raise OAuthError("invalid_grant", _INVALID_GRANT)
        if found.refresh_expires_at is None or found.refresh_expires_at < now:
            raise OAuthError("invalid_grant", _INVALID_GRANT)
        wanted = form.get("scope", "").split()
        if wanted and not set(wanted) <= set(found.scopes.split()):
            raise OAuthError("invalid_scope", "a refresh may only narrow the scopes granted")
        return self._tokens(
            app, patient_id, authorization_id, old_refresh=token_hash(token), only=wanted or None
        )

    def _tokens(
        self,
        app: apps.AppRow,
        patient_id: str,
        authorization_id: str,
        *,
        old_refresh: str | None,
        only: list[str] | None = None,
    ) -> TokenAnswer:
        now = self._rt.clock.now()
        with self._rt.engine.connect() as conn:
            found = apps.get_authorization(conn, patient_id, authorization_id)
            ins = apps.ins_of(conn, patient_id)
        if found is None or found.revoked_at is not None or ins is None:
            raise OAuthError("invalid_grant", _INVALID_GRANT)
        try:
            # Narrowed again to the app's registration as it is now.
            grant = narrow_app(
                " ".join(only or found.scopes.split()), frozenset(app.scopes.split())
            )
        except ScopeError:
            raise OAuthError("invalid_grant", _INVALID_GRANT) from None
        holder = Ins(*ins)
        refresh = None
        if "offline_access" in found.scopes.split():
            refresh = f"{patient_id}.{authorization_id}.{secrets.token_urlsafe(32)}"
            with self._rt.engine.begin() as conn:
                if not apps.rotate_refresh(
                    conn,
                    patient_id,
                    authorization_id,
                    old_hash=old_refresh,
                    new_hash=token_hash(refresh),
                    expires_at=now + REFRESH_LIFETIME,
                    at=now,
                ):
                    # Another request rotated it first (or it was withdrawn meanwhile).
                    raise OAuthError("invalid_grant", _INVALID_GRANT)
        else:
            with self._rt.engine.begin() as conn:
                apps.touch(conn, patient_id, authorization_id, now)
        ttl = self._rt.settings.token_ttl_seconds
        access = issue_token(
            self._actor(found, holder),
            self._rt.token_secret,
            now=now,
            ttl_seconds=ttl,
            scopes=grant.inner,
            client_id=app.client_id,
            patient=holder,
            authorization=f"{patient_id}/{authorization_id}",
        )
        return TokenAnswer(access, ttl, grant.answer, patient_id, refresh)

    def _actor(self, found: apps.AuthorizationRow, holder: Ins) -> Actor:
        if found.actor_kind == ActorKind.REPRESENTATIVE.value:
            return Actor(kind=ActorKind.REPRESENTATIVE, id=found.actor_id, ins=holder)
        return actors.patient_actor(self._rt, holder)

    def revoke(self, form: dict[str, str]) -> None:
        """RFC 7009: the app gives up a refresh token (and so the authorization). Unknown
        tokens are ignored (the answer is 200 either way)."""
        token = form.get("token", "")
        patient_id, _, rest = token.partition(".")
        authorization_id, _, _secret = rest.partition(".")
        if not (patient_id and authorization_id) or len(token) > 200:
            return
        with self._rt.engine.connect() as conn:
            found = apps.get_authorization(conn, patient_id, authorization_id)
        if (
            found is not None
            and found.revoked_at is None
            and found.client_id == form.get("client_id")
            and found.refresh_hash is not None
            and hmac.compare_digest(found.refresh_hash, token_hash(token))
        ):
            self._end(patient_id, authorization_id)

    def _end(self, patient_id: str, authorization_id: str) -> None:
        """End an authorization through the gate, as the ``apps`` system job (traced)."""
        gate = self._rt.access(system_actor("apps"))
        gate.end_app(PatientKey(patient_id), authorization_id)

    def seen(self, authorization: str) -> None:
        """An app's token was used: its last access, as the portal lists it (written at most
        once a minute per authorization and process)."""
        now = self._rt.clock.now()
        with self._lock:
            last = self._seen.get(authorization)
            if last is not None and now - last < timedelta(minutes=1):
                return
            self._seen[authorization] = now
            if len(self._seen) > 10_000:
                self._seen.clear()
        patient_id, _, authorization_id = authorization.partition("/")
        with self._rt.engine.begin() as conn:
            apps.touch(conn, patient_id, authorization_id, now)
