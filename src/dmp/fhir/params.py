"""FHIR R4 search parameters: names, modifiers, prefixes, and the strict or lenient handling of
what a server does not support (FHIR R4 3.1.1.5.3 and the ``Prefer: handling`` header).

Every search route declares its parameters here with their FHIR type and the modifiers it
serves. An unknown parameter or an unsupported modifier is refused with 400 and an
OperationOutcome naming it, unless the request says ``Prefer: handling=lenient``: then it is
ignored, and the ``self`` link states only the parameters applied.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from starlette.datastructures import QueryParams

from dmp.errors import BadRequest

# Parameters every search takes whatever the resource (FHIR R4 "all resources" controls).
CONTROL = {
    "_count": "number",
    "_offset": "number",
    "_format": "special",
    "_summary": "special",
    # How the total is counted: FHIR R4's _total, and the _totalMethod fhirpy sends with
    # _count=0 for .count(). Every total this server gives is exact.
    "_total": "special",
    "_totalMethod": "special",
}
TOTAL_MODES = {"_total": ("none", "estimate", "accurate"), "_totalMethod": ("count", "estimate")}

# The modifiers FHIR R4 defines per type that this server serves.
MODIFIERS = {
    "token": frozenset({"not"}),
    "string": frozenset({"exact", "contains"}),
    "reference": frozenset({"identifier"}),
    "date": frozenset(),
    "number": frozenset(),
    "special": frozenset(),
}
DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


@dataclass(frozen=True)
class Param:
    name: str
    modifier: str | None
    value: str


def lenient(prefer: str | None) -> bool:
    """Whether the client asked unknown parameters to be ignored (``Prefer: handling=lenient``)."""
    parts = {p.strip().replace(" ", "") for p in (prefer or "").split(",") for p in p.split(";")}
    return "handling=lenient" in parts


def parse(
    params: QueryParams,
    declared: dict[str, str],
    *,
    lenient_handling: bool,
    modifiers: dict[str, frozenset[str]] | None = None,
) -> list[Param]:
    """The parameters of a search, checked against those declared (name -> FHIR type) and the
    modifiers served per type (by default every one of MODIFIERS)."""
    known = {**CONTROL, **declared}
    served = MODIFIERS if modifiers is None else modifiers
    applied: list[Param] = []
    refused: list[str] = []
    for raw_name, value in params.multi_items():
        name, _, modifier = raw_name.partition(":")
        kind = known.get(name)
        if kind is None:
            refused.append(f"unknown parameter {raw_name!r}")
        elif modifier and modifier not in served.get(kind, frozenset()):
            # A type modifier on a reference (patient:Patient) names the only type it has.
            if kind == "reference" and modifier[:1].isupper():
                applied.append(Param(name, None, value))
                continue
            refused.append(f"modifier {modifier!r} of {name!r} ({kind}) is not supported")
        else:
            applied.append(Param(name, modifier or None, value))
    if refused and not lenient_handling:
        raise BadRequest("; ".join(refused) + " (Prefer: handling=lenient ignores them)")
    return applied


def summary(value: str | None) -> str | None:
    """``_summary``: ``count`` (the total only) and ``false`` (whole resources) are served."""
    if value not in (None, "count", "false"):
        raise BadRequest(f"_summary={value!r} is not supported (count or false)")
    return value


def total_mode(params: QueryParams | Iterable[Param]) -> None:
    """``_total`` and ``_totalMethod`` take the values FHIR (and fhirpy) send; the total is
    exact whichever is asked (an estimate may be exact)."""
    items = (
        params.multi_items()
        if isinstance(params, QueryParams)
        else [(p.name, p.value) for p in params]
    )
    for name, value in items:
        if name in TOTAL_MODES and value not in TOTAL_MODES[name]:
            raise BadRequest(f"{name}={value!r}: one of {', '.join(TOTAL_MODES[name])}")


def values(applied: Iterable[Param], name: str, modifier: str | None = None) -> list[str]:
    """The values of one parameter (comma-separated values split: OR within a parameter)."""
    return [
        v for p in applied if p.name == name and p.modifier == modifier for v in p.value.split(",")
    ]


def first(applied: Iterable[Param], name: str) -> str | None:
    for p in applied:
        if p.name == name:
            return p.value
    return None


def token_matches(wanted: str, system: str | None, code: str | None) -> bool:
    """FHIR token forms: ``code``, ``system|code``, ``|code`` (no system), ``system|``."""
    if "|" not in wanted:
        return code is not None and wanted == code
    want_system, want_code = wanted.split("|", 1)
    if want_system and system is not None and _plain(want_system) != _plain(system):
        return False
    if want_system and system is None and want_code == "":
        return False
    return want_code == "" or want_code == code


def _plain(system: str) -> str:
    return system.removeprefix("urn:oid:")


def normalise(text: str) -> str:
    """FHIR string search: case- and accent-insensitive."""
    decomposed = unicodedata.normalize("NFD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def string_matches(wanted: str, modifier: str | None, actual: str | None) -> bool:
    """Default: starts with (case- and accent-insensitive); ``:contains``; ``:exact``."""
    if actual is None:
        return False
    if modifier == "exact":
        return wanted == actual
    if modifier == "contains":
        return normalise(wanted) in normalise(actual)
    return normalise(actual).startswith(normalise(wanted))


def interval(text: str, name: str) -> tuple[datetime, datetime]:
    """The interval a FHIR date/dateTime value covers (a year, a month, a day, an instant)."""
    try:
        if len(text) == 4:
            start = datetime(int(text), 1, 1, tzinfo=UTC)
            return start, start.replace(year=start.year + 1)
        if len(text) == 7:
            y, m = int(text[:4]), int(text[5:7])
            start = datetime(y, m, 1, tzinfo=UTC)
            return start, (start + timedelta(days=32)).replace(day=1)
        if len(text) == 10:
            start = datetime.fromisoformat(text).replace(tzinfo=UTC)
            return start, start + timedelta(days=1)
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        at = at.astimezone(UTC)  # year 1 at +14:00 is before the calendar: OverflowError
        return at, at + timedelta(microseconds=1)
    except (ValueError, OverflowError):
        # OverflowError: the interval of a date at the calendar's edge (9999-12-31) ends
        # after the last representable instant.
        raise BadRequest(f"{name}: {text!r} is not a FHIR date this server can search") from None


def split_prefix(raw: str) -> tuple[str, str]:
    if raw[:2] in DATE_PREFIXES and raw[2:3].isdigit():
        return raw[:2], raw[2:]
    return "eq", raw


# "ap": this server reads "approximately" as the value's own interval widened by one day on
# each side (FHIR leaves the width to the server).
APPROXIMATELY = timedelta(days=1)


def date_matches(raw: str, name: str, at: datetime | None) -> bool:
    """One date criterion (with its prefix) against an instant, as FHIR R4 defines prefixes
    for a value compared with an instant."""
    if at is None:
        return False
    prefix, text = split_prefix(raw)
    start, end = interval(text, name)
    match prefix:
        case "eq":
            return start <= at < end
        case "ne":
            return not start <= at < end
        case "gt" | "sa":
            return at >= end
        case "lt" | "eb":
            return at < start
        case "ge":
            return at >= start
        case "le":
            return at < end
        case _:  # ap
            return start - APPROXIMATELY <= at < end + APPROXIMATELY


def date_bounds(raws: list[str], name: str) -> tuple[datetime | None, datetime | None]:
    """Criteria on one date parameter as one [low, high) range (AND of the criteria), for
    searches the database runs; ``ne`` is no range: the caller applies it (outside the
    interval), it is only checked here."""
    low: datetime | None = None
    high: datetime | None = None
    for raw in raws:
        prefix, text = split_prefix(raw)
        start, end = interval(text, name)
        if prefix == "ne":
            continue
        if prefix == "ap":
            start, end = start - APPROXIMATELY, end + APPROXIMATELY
        if prefix in ("eq", "ap"):
            low = start if low is None else max(low, start)
            high = end if high is None else min(high, end)
        elif prefix in ("ge", "gt", "sa"):
            bound = end if prefix in ("gt", "sa") else start
            low = bound if low is None else max(low, bound)
        else:  # le, lt, eb
            bound = end if prefix == "le" else start
            high = bound if high is None else min(high, bound)
    return low, high


def reference_matches(
    wanted: str, modifier: str | None, kinds: tuple[str, ...], ident: tuple[str, str] | None
) -> bool:
    """A reference criterion against a target known by its identifier (system, value): the
    target has no resource id on this server, so ``Type/id`` and ``id`` name the identifier's
    value, and ``:identifier`` takes ``system|value``."""
    if ident is None:
        return False
    system, value = ident
    if modifier == "identifier":
        return token_matches(wanted, system, value)
    kind, _, rest = wanted.rpartition("/")
    if kind and kind.split("/")[-1] not in kinds:
        return False
    return rest == value
