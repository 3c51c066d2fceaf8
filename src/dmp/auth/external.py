"""Logging into the portals through an identity provider: Pro Santé Connect for professionals,
FranceConnect for holders (docs/portals.md).

The protocol is :mod:`dmp.auth.oidc`'s; this module decides what a vouched-for identity opens:

- **Pro Santé Connect**: the professional's national identifier (``SubjectNameID``, else
  ``preferred_username``) must be in the directory; the structure is the one of the directory
  that the provider's activities name, else the first the directory lists; a professional the
  DMP forbids (AC-16: occupational medicine, insurers...) is refused at the door. The CPS card and
  the e-CPS app are both two-factor: the session is logged in.
- **FranceConnect**: the identity pivot is matched to the INS identity of one open record
  (:mod:`dmp.domain.identity_pivot`, through the gate as the ``franceconnect`` system job); no
  match, no record. The login is in the holder's history; a first login activates the account.

The person's portal account is made on first use (no password: the password login refuses
it). The local password + TOTP accounts stay for those without.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from dmp.access.codes import token_hash
from dmp.access.policy import is_forbidden
from dmp.auth import actors
from dmp.auth.oidc import (
    FRANCECONNECT,
    PSC,
    Identity,
    LoginRefused,
    OidcProvider,
    configured,
    expires,
)
from dmp.auth.portal import TOO_MANY, Portal, Session
from dmp.auth.throttle import PORTAL_ADDRESS, Throttle
from dmp.domain.identity_pivot import PivotError, pivot_from_claims
from dmp.domain.ins import Ins
from dmp.errors import NotAuthenticated, NotFound
from dmp.identity.actor import Actor, ActorKind, system_actor
from dmp.records import patients, portal
from dmp.runtime import Runtime

_PS_ID = re.compile(r"^[0-9A-Za-z]{6,20}$")
NO_RECORD = (
    "aucun dossier ne correspond à l'identité transmise par FranceConnect : adressez-vous "
    "à un guichet d'accueil (pharmacie, caisse d'assurance maladie) avec une pièce d'identité"
)
LABELS = {PSC: "Pro Santé Connect", FRANCECONNECT: "FranceConnect"}


@dataclass(frozen=True, slots=True)
class Redirect:
    url: str
    state: str


class ExternalLogins:
    """The portal's identity providers (one per process; providers' metadata kept an hour)."""

    def __init__(self, rt: Runtime, portal_service: Portal) -> None:
        self._rt = rt
        self._portal = portal_service
        self._throttle = Throttle(rt)
        self.providers = {
            name: OidcProvider(config) for name, config in configured(rt.settings).items()
        }

    def redirect_uri(self, name: str) -> str:
        return f"{self._rt.settings.portal_url.rstrip('/')}/connexion/{name}/retour"

    def _provider(self, name: str) -> OidcProvider:
        provider = self.providers.get(name)
        if provider is None:
            raise NotFound("ce mode de connexion n'est pas proposé ici")
        return provider

    def start(self, name: str, address: str) -> Redirect:
        """Send the browser to the provider; the state is kept (hashed) until it comes back."""
        provider = self._provider(name)
        self._throttle.hit(PORTAL_ADDRESS, address, TOO_MANY)
        started = provider.start(self.redirect_uri(name))
        now = self._rt.clock.now()
        with self._rt.engine.begin() as conn:
            portal.add_oidc_login(
                conn,
                token_hash(started.state),
                name,
                started.nonce,
                started.verifier,
                at=now,
                expires=expires(now),
            )
        return Redirect(started.url, started.state)

    def finish(
        self,
        name: str,
        *,
        state: str,
        browser_state: str | None,
        code: str,
        error: str,
        address: str,
    ) -> Session:
        """The provider sent the browser back: the state is this browser's and is used once,
        the code is exchanged, the identity checked and matched."""
        provider = self._provider(name)
        self._throttle.hit(PORTAL_ADDRESS, address, TOO_MANY)
        if not state or len(state) > 200:
            raise LoginRefused("la réponse du fournisseur d'identité est incomplète")
        # The state must be the one this browser was given (a login started elsewhere and
        # replayed here, or pushed into someone else's browser, is refused) ...
        if browser_state is None or browser_state != state:
            raise LoginRefused(
                "cette connexion n'a pas été commencée dans ce navigateur : recommencez"
            )
        now = self._rt.clock.now()
        # ... and is used once, whatever the provider answered.
        with self._rt.engine.begin() as conn:
            pending = portal.take_oidc_login(conn, token_hash(state), name, now)
        if pending is None:
            raise LoginRefused("cette connexion a déjà servi ou a expiré : recommencez")
        if error:
            raise LoginRefused("la connexion a été annulée ou refusée chez le fournisseur")
        if not code or len(code) > 2000:
            raise LoginRefused("la réponse du fournisseur d'identité est incomplète")
        identity = provider.finish(code, self.redirect_uri(name), pending.nonce, pending.verifier)
        extra = {"idp": name, "id_token": identity.id_token, "acr": identity.acr}
        if name == PSC:
            return self._professional(identity, extra)
        return self._holder(identity, extra)

    def logout_url(self, session: Session) -> str | None:
        """Where to send the browser to log out at the provider too (None: a local login)."""
        name = session.data.get("idp")
        id_token = session.data.get("id_token")
        provider = self.providers.get(str(name)) if name else None
        if provider is None or not isinstance(id_token, str):
            return None
        back = f"{self._rt.settings.portal_url.rstrip('/')}?deconnecte=1"
        return provider.logout_url(id_token, back)

    # -- what an identity opens ---------------------------------------------------------

    def _professional(self, identity: Identity, extra: dict[str, Any]) -> Session:
        claims = identity.claims
        ps = claims.get("SubjectNameID") or claims.get("preferred_username")
        if not isinstance(ps, str) or not _PS_ID.match(ps):
            raise LoginRefused("Pro Santé Connect n'a pas transmis d'identifiant national")
        try:
            actor = self._directory_actor(ps, _structures_named(claims.get("SubjectRefPro")))
        except NotAuthenticated:
            raise LoginRefused(
                "votre identifiant national n'est pas dans l'annuaire des professionnels de "
                "santé de ce service"
            ) from None
        if is_forbidden(actor, self._rt.matrix):
            raise LoginRefused(
                "votre profession ou votre lieu d'exercice n'a pas accès au DMP (article "
                "L1111-18 du code de la santé publique)"
            )
        account = self._account(ps, ActorKind.PROFESSIONAL, structure_id=actor.structure_id)
        extra |= {
            "actor_id": actor.id,
            "structure_id": actor.structure_id,
            "profession": actor.profession,
            "specialty": actor.specialty,
            "section": actor.pharmacist_section,
            "structure_kind": actor.structure_kind,
        }
        return self._portal.external_session(account.id, extra)

    def _directory_actor(self, ps: str, named: set[str]) -> Actor:
        first = actors.professional_actor(self._rt, ps)
        for structure in sorted(named):
            try:
                return actors.professional_actor(self._rt, ps, structure)
            except NotAuthenticated:
                continue
        return first

    def _holder(self, identity: Identity, extra: dict[str, Any]) -> Session:
        try:
            pivot = pivot_from_claims(identity.claims)
        except PivotError as exc:
            raise LoginRefused(str(exc)) from None
        ins = self._rt.access(system_actor("franceconnect")).match_identity(pivot)
        if ins is None:
            raise LoginRefused(NO_RECORD)
        account = self._holder_account(ins)
        holder = self._rt.access(actors.patient_actor(self._rt, ins))
        holder.record_login(ins, FRANCECONNECT)
        if account.activated_at is None:
            holder.activate_account(ins)
            with self._rt.engine.begin() as conn:
                portal.update_account(conn, account.id, activated_at=self._rt.clock.now())
        return self._portal.external_session(account.id, extra)

    def _holder_account(self, ins: Ins) -> portal.AccountRow:
        with self._rt.engine.begin() as conn:
            patient_id = patients.find_patient_id(conn, ins.oid, ins.value)
            assert patient_id is not None  # the gate matched it a moment ago
            account = portal.account_for_patient(conn, patient_id)
        if account is not None:
            return account
        return self._account(ins.value, ActorKind.PATIENT, patient_id=patient_id, ins=ins)

    def _account(
        self,
        login: str,
        kind: ActorKind,
        *,
        structure_id: str | None = None,
        patient_id: str | None = None,
        ins: Ins | None = None,
    ) -> portal.AccountRow:
        """The person's portal account, made on first use (without a password); one made
        meanwhile by a login in another tab is read again rather than made twice."""
        with self._rt.engine.begin() as conn:
            if portal.account_by_login(conn, login) is None:
                with contextlib.suppress(IntegrityError), conn.begin_nested():
                    portal.new_account(
                        conn,
                        login=login,
                        kind=kind.value,
                        at=self._rt.clock.now(),
                        patient_id=patient_id,
                        ins=(ins.oid, ins.value) if ins else None,
                        structure_id=structure_id,
                    )
            account = portal.account_by_login(conn, login)
        if account is None or account.kind != kind.value:
            raise LoginRefused("cet identifiant est celui d'un autre type de compte de ce service")
        return account


def _structures_named(value: object) -> set[str]:
    """Structure identifiers in Pro Santé Connect's ``SubjectRefPro`` (its exercises and
    their activities): every string value of an activity, which the directory then
    recognises or not (the claim's field names have changed over versions)."""
    found: set[str] = set()
    if not isinstance(value, dict):
        return found
    exercises = value.get("exercices")
    for exercise in exercises if isinstance(exercises, list) else []:
        activities = exercise.get("activities") if isinstance(exercise, dict) else None
        for activity in activities if isinstance(activities, list) else []:
            if isinstance(activity, dict):
                found |= {v for v in activity.values() if isinstance(v, str) and len(v) <= 32}
    return found
