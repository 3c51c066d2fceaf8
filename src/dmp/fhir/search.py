"""ITI-67 search parameters -> the gate's search criteria."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from dmp.access.gate import MAX_OFFSET
from dmp.access.views import SearchCriteria
from dmp.domain.ins import PatientRef, parse_ins_token
from dmp.errors import BadRequest
from dmp.fhir import params as fhir_params
from dmp.fhir.mapping import patient_ref

# The DocumentReference search parameters (ITI-67 and the PDSm server role), by the code a
# client sends, with their FHIR type.
DOCREF_PARAMETERS = {
    "patient": "reference",
    "patient.identifier": "token",
    "subject": "reference",
    "status": "token",
    "type": "token",
    "category": "token",
    "date": "date",
    "creation": "date",
    "period": "date",
    "period-start": "date",
    "period-end": "date",
    "setting": "token",
    "facility": "token",
    "format": "token",
    "security-label": "token",
    "event": "token",
    "identifier": "token",
    "related": "reference",
    "relatesto": "reference",
    "author": "reference",
    "author.identifier": "token",
    "isArchived": "token",
    "_sort": "special",
}
# The searches run in the database: the reference modifier :identifier only.
DOCREF_MODIFIERS = {"reference": frozenset({"identifier"})}
SUPPORTED = frozenset({*DOCREF_PARAMETERS, "_count", "_offset", "_format", "_summary"})
MAX_COUNT = 100


@dataclass
class DocumentSearch:
    patient: PatientRef
    statuses: tuple[str, ...] | None
    type_codes: tuple[str, ...] | None
    service_from: datetime | None
    service_to: datetime | None
    criteria: SearchCriteria
    count: int
    offset: int
    impossible: bool = False  # a criterion no stored document can meet (event codes)
    echo: dict[str, list[str]] = field(default_factory=dict)


def _tokens(params: QueryParams, name: str) -> tuple[str, ...] | None:
    values = [v for raw in params.getlist(name) for v in raw.split(",") if v]
    if not values:
        return None
    return tuple(v.split("|", 1)[1] if "|" in v else v for v in values)


def date_range(query: QueryParams, name: str) -> tuple[datetime | None, datetime | None]:
    return fhir_params.date_bounds(query.getlist(name), name)


def applied_parameters(query: QueryParams, *, lenient_handling: bool) -> QueryParams:
    """The parameters this search applies, checked (400 naming what is not supported, unless
    lenient) and written one way: ``subject`` as ``patient``, ``x:identifier`` as
    ``x.identifier`` for the patient and the author."""
    applied = fhir_params.parse(
        query, DOCREF_PARAMETERS, lenient_handling=lenient_handling, modifiers=DOCREF_MODIFIERS
    )
    items = []
    for p in applied:
        name = "patient" if p.name == "subject" else p.name
        if p.modifier == "identifier":
            if name not in ("patient", "author"):
                raise BadRequest(f"{p.name}:identifier is not supported")
            name = f"{name}.identifier"
        items.append((name, p.value))
    return QueryParams(items)


def parse_document_search(params: QueryParams, *, test_mode: bool) -> DocumentSearch:
    """ITI-67 criteria from parameters already checked by :func:`applied_parameters`."""
    patient: PatientRef
    if params.get("patient.identifier"):
        patient = parse_ins_token(params["patient.identifier"], test_mode=test_mode)
    elif params.get("patient"):
        value = params["patient"]
        patient = patient_ref(
            value if value.startswith("Patient") else f"Patient/{value}", test_mode=test_mode
        )
    else:
        raise BadRequest("patient or patient.identifier is required (ITI-67)")
    archived = params.get("isArchived")
    status = _tokens(params, "status")
    statuses: set[str] = set()
    for s in status or ("current",):
        if s == "current":
            statuses |= (
                {"current"}
                if archived == "false"
                else {"archived"}
                if archived == "true"
                else {"current", "archived"}
            )
        elif s == "superseded":
            statuses.add("superseded")
        elif s == "entered-in-error":
            pass  # logically deleted documents are returned to nobody
        else:
            raise BadRequest(f"unknown status {s!r}")
    try:
        count = int(params.get("_count", "20"))
        offset = int(params.get("_offset", "0"))
    except ValueError:
        raise BadRequest("_count and _offset are whole numbers") from None
    if not 1 <= count <= MAX_COUNT or not 0 <= offset <= MAX_OFFSET:
        raise BadRequest(f"_count must be 1 to {MAX_COUNT}, _offset 0 to {MAX_OFFSET}")
    sort = params.get("_sort", "-period")
    if sort not in ("period", "-period", "date", "-date"):
        raise BadRequest("_sort supports period and date, ascending or descending (-)")
    service_from, service_to = date_range(params, "period")
    start_from, start_to = date_range(params, "period-start")
    service_from = max(filter(None, (service_from, start_from)), default=None)
    service_to = min(filter(None, (service_to, start_to)), default=None)
    created_from, created_to = date_range(params, "creation")
    date_from, date_to = date_range(params, "date")
    end_from, end_to = date_range(params, "period-end")
    identifiers = _tokens(params, "identifier")
    related = [
        r.removeprefix("DocumentReference/").split(".")[-1]
        for r in (_tokens(params, "related") or ()) + (_tokens(params, "relatesto") or ())
    ]
    criteria = SearchCriteria(
        class_codes=_tokens(params, "category"),
        format_codes=_tokens(params, "format"),
        facility_types=_tokens(params, "facility"),
        practice_settings=_tokens(params, "setting"),
        unique_ids=identifiers,
        author_ids=_tokens(params, "author.identifier") or _tokens(params, "author"),
        replaces_ids=tuple(related) or None,
        confidentiality=_tokens(params, "security-label"),
        created_from=created_from,
        created_to=created_to,
        submitted_from=date_from,
        submitted_to=date_to,
        service_end_from=end_from,
        service_end_to=end_to,
        oldest_first=not sort.startswith("-"),
    )
    return DocumentSearch(
        patient=patient,
        statuses=tuple(sorted(statuses)),
        type_codes=_tokens(params, "type"),
        service_from=service_from,
        service_to=service_to,
        criteria=criteria,
        count=count,
        offset=offset,
        impossible=bool(params.get("event")) or not statuses,
    )


def page_links(
    base: str, params: QueryParams, total: int, count: int, offset: int
) -> dict[str, Any]:
    # The links state every parameter applied, the defaults included: nothing is filtered
    # that the links do not say.
    defaults = {"status": "current", "_sort": "-period", "_count": str(count)}
    stated = [(k, v) for k, v in params.multi_items() if k not in ("_offset", "_count")]
    stated += [(k, v) for k, v in defaults.items() if k == "_count" or k not in params]

    def url(off: int) -> str:
        items = [*stated, ("_offset", str(off))]
        return f"{base}/DocumentReference?{urlencode(items)}"

    links = {"self": url(offset)}
    if offset + count < total:
        links["next"] = url(offset + count)
    if offset > 0:
        links["previous"] = url(max(0, offset - count))
    return links
