"""ITI-67 search parameters -> the gate's search criteria."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from dmp.access.gate import MAX_OFFSET
from dmp.access.views import SearchCriteria
from dmp.domain.ins import PatientRef, parse_ins_token
from dmp.errors import BadRequest
from dmp.fhir.mapping import patient_ref

SUPPORTED = frozenset(
    {
        "patient",
        "patient.identifier",
        "status",
        "type",
        "category",
        "date",
        "creation",
        "period",
        "period-start",
        "period-end",
        "setting",
        "facility",
        "format",
        "security-label",
        "event",
        "identifier",
        "related",
        "relatesto",
        "author",
        "author.identifier",
        "isArchived",
        "_count",
        "_sort",
        "_offset",
        "_format",
    }
)
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


def _instant(text: str, name: str) -> tuple[datetime, datetime]:
    """The interval a FHIR date/dateTime value covers (a day, a month, a year, an instant)."""
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
        return at, at + timedelta(microseconds=1)
    except (ValueError, OverflowError):
        # OverflowError: the interval of a date at the calendar's edge (9999-12-31) ends
        # after the last representable instant.
        raise BadRequest(f"{name}: {text!r} is not a FHIR date this server can search") from None


def date_range(params: QueryParams, name: str) -> tuple[datetime | None, datetime | None]:
    low: datetime | None = None
    high: datetime | None = None
    for raw in params.getlist(name):
        prefix, value = (
            (raw[:2], raw[2:])
            if raw[:2] in ("eq", "ge", "gt", "le", "lt", "sa", "eb")
            else ("eq", raw)
        )
        start, end = _instant(value, name)
        if prefix in ("eq",):
            low, high = max(filter(None, (low, start))), min(filter(None, (high, end)))
        elif prefix in ("ge", "sa") or prefix == "gt":
            bound = end if prefix in ("gt", "sa") else start
            low = bound if low is None else max(low, bound)
        else:  # le, lt, eb
            bound = end if prefix == "le" else start
            high = bound if high is None else min(high, bound)
    return low, high


def parse_document_search(params: QueryParams, *, test_mode: bool) -> DocumentSearch:
    unknown = {k for k in params if k not in SUPPORTED}
    if unknown:
        raise BadRequest(f"unsupported search parameters: {', '.join(sorted(unknown))}")
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
