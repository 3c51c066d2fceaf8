"""SMART v2 scopes (``user/DocumentReference.rs``): what a grant allows, checked by the gate."""

from __future__ import annotations

from dataclasses import dataclass

# The scopes a client may be registered with (and so granted).
SUPPORTED_SCOPES = frozenset(
    f"user/{resource}.{verbs}"
    for resource in ("DocumentReference", "Binary", "List", "Patient", "Consent", "AuditEvent")
    for verbs in ("c", "r", "u", "d", "s", "rs", "cruds", "cud")
) | {"user/*.cruds", "user/*.rs"}


@dataclass(frozen=True, slots=True)
class Need:
    """What one gate action needs from a scoped grant: a FHIR resource type and one verb
    (c create, r read, u update, d delete, s search)."""

    resource: str
    verb: str

    def __str__(self) -> str:
        return f"user/{self.resource}.{self.verb}"


def scope_allows(granted: frozenset[str], wanted: str) -> bool:
    """``user/DocumentReference.rs`` allows read and search; ``user/*.cruds`` allows all."""
    resource, _, verbs = wanted.partition(".")
    for g in granted:
        g_resource, _, g_verbs = g.partition(".")
        if g_resource in (resource, "user/*") and set(verbs) <= set(g_verbs):
            return True
    return False


# -- the token endpoint's grammar (SMART App Launch v2, "Scopes for requesting clinical data")

RESOURCES = ("DocumentReference", "Binary", "List", "Patient", "Consent", "AuditEvent")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}


class ScopeError(ValueError):
    """A requested scope outside the grammar, or none that the client may be granted."""


def _parse(scope: str) -> tuple[str, str, str]:
    """(context, resource, verbs in cruds order) of one scope; ScopeError otherwise."""
    context, slash, rest = scope.partition("/")
    resource, dot, verbs = rest.partition(".")
    if not slash or not dot or context not in ("patient", "user", "system"):
        raise ScopeError(
            f"{scope[:60]!r} is not a SMART scope (<patient|user|system>/<resource>.<cruds>)"
        )
    if resource != "*" and resource not in RESOURCES:
        raise ScopeError(f"{scope[:60]!r}: {resource[:40]!r} is not a resource served here")
    verbs = _V1.get(verbs, verbs)
    if (
        not verbs
        or verbs != "".join(v for v in "cruds" if v in verbs)
        or len(set(verbs)) < len(verbs)
    ):
        raise ScopeError(f"{scope[:60]!r}: the permissions are a subset of cruds, in that order")
    return context, resource, verbs


def _merge(a: str, b: str) -> str:
    return "".join(v for v in "cruds" if v in a or v in b)


def _within(resource: str, verbs: str, registered: frozenset[str]) -> dict[str, str]:
    """What one requested resource and verbs get of the registered scopes: resource -> the
    verbs both allow (``*`` on either side stands for every resource). Registered launch and
    token scopes (``offline_access``...) grant no resource."""
    out: dict[str, str] = {}
    for g in registered:
        if "." not in g:
            continue
        _, g_resource, g_verbs = _parse(g)
        if g_resource not in ("*", resource) and resource != "*":
            continue
        common = "".join(v for v in "cruds" if v in verbs and v in g_verbs)
        if common:
            target = resource if resource != "*" else g_resource
            out[target] = _merge(out.get(target, ""), common)
    return out


def narrow(requested: str, registered: frozenset[str]) -> tuple[frozenset[str], str]:
    """The scopes a structure's software asking ``requested`` is granted: each requested scope
    checked against the grammar and narrowed to what the client is registered for. Returns the
    grant (``user/`` scopes, what the gate checks) and the scope to answer (in the requested
    context). ``system/`` means ``user/`` here: the software always acts for the professional
    its assertion names (a DMP access is a professional's), so both are the same grant.
    ``patient/`` scopes are for apps a patient allows, not for a structure's software; launch
    and identity scopes (``launch/patient``, ``openid``...) have no meaning without a launch.
    """
    granted: dict[tuple[str, str], str] = {}  # (context, resource) -> verbs
    for scope in requested.split():
        context, resource, verbs = _parse(scope)
        if context == "patient":
            raise ScopeError(
                f"{scope[:60]!r}: patient/ scopes are for apps a patient allows; a structure's "
                "software acts for a professional (user/ or system/)"
            )
        for target, common in _within(resource, verbs, registered).items():
            granted[(context, target)] = _merge(granted.get((context, target), ""), common)
    if not granted:
        raise ScopeError(
            f"none of the requested scopes ({requested[:120]!r}) is one this client is "
            f"registered for ({' '.join(sorted(registered))})"
        )
    inner = frozenset(f"user/{r}.{v}" for (_, r), v in granted.items())
    answer = " ".join(sorted(f"{c}/{r}.{v}" for (c, r), v in granted.items()))
    return inner, answer


# -- apps a patient allows (SMART App Launch, standalone patient launch) ----------------------

# What an app of the catalogue may be registered for: reading the holder's record.
APP_SCOPES = frozenset(
    f"patient/{resource}.{verbs}" for resource in (*RESOURCES, "*") for verbs in ("r", "s", "rs")
)
# Launch and token scopes an app may ask besides: the patient in context (always the holder's
# record here), and a refresh token.
APP_EXTRAS = frozenset({"launch/patient", "offline_access"})
# Asked by many apps, granted by none here (no ID token is issued): left out of the answer.
_APP_IGNORED = frozenset({"openid", "fhirUser", "profile", "online_access"})


@dataclass(frozen=True, slots=True)
class AppGrant:
    """What an app is granted: the gate's ``user/`` scopes, the scope string to answer
    (``patient/`` as asked), and the extras kept (``launch/patient``, ``offline_access``)."""

    inner: frozenset[str]
    answer: str
    extras: frozenset[str]


def narrow_app(requested: str, registered: frozenset[str]) -> AppGrant:
    """The scopes an app the holder allows is granted: ``patient/`` scopes only (an app acts
    for the holder, on the holder's record), read and search only, narrowed to what the app
    is registered for. ScopeError if nothing is left or a scope is outside the grammar."""
    granted: dict[str, str] = {}
    extras: set[str] = set()
    for scope in requested.split():
        if scope in APP_EXTRAS:
            if scope in registered:
                extras.add(scope)
            continue
        if scope in _APP_IGNORED:
            continue
        context, resource, verbs = _parse(scope)
        if context != "patient":
            raise ScopeError(
                f"{scope[:60]!r}: an app the holder allows reads the holder's record "
                "(patient/ scopes)"
            )
        reads = "".join(v for v in verbs if v in "rs")  # an app never writes
        for target, common in _within(resource, reads, registered).items():
            granted[target] = _merge(granted.get(target, ""), common)
    if not granted:
        raise ScopeError(
            f"none of the requested scopes ({requested[:120]!r}) is one this app may be "
            f"granted ({' '.join(sorted(registered))})"
        )
    inner = frozenset(f"user/{r}.{v}" for r, v in granted.items())
    answer = " ".join(sorted({f"patient/{r}.{v}" for r, v in granted.items()} | extras))
    return AppGrant(inner, answer, frozenset(extras))
