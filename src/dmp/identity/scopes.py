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
