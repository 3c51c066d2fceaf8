"""ITI-67 search parameters -> the gate's search criteria."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from dmp.access.kernel import MAX_OFFSET
from dmp.access.views import SearchCriteria
from dmp.domain import valuesets
from dmp.domain.codes import TYPE_LABELS, unique_id_forms
from dmp.domain.ins import PatientKey, PatientRef
from dmp.errors import BadRequest, InvalidInput
from dmp.fhir import params as fhir_params
from dmp.fhir.common import ins_param
from dmp.front.fhir_mapping import parse_doc_id, patient_ref

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
    "_id": "token",
    "_sort": "special",
}
# What each parameter's values are matched against in the database search (criterion names
# of the records layer), per FHIR type: tokens and references take :not / :missing, dates
# take :missing and every prefix (ne as "outside the interval").
TOKEN_CRITERIA = {
    "type": "type",
    "category": "class",
    "format": "format",
    "facility": "facility_type",
    "setting": "practice_setting",
    "identifier": "unique_id",
    "author.identifier": "author_id",
    "security-label": "confidentiality",
}
DATE_CRITERIA = {
    "date": "submitted",
    "creation": "creation",
    "period": "service_start",
    "period-start": "service_start",
    "period-end": "service_end",
}
REFERENCE_CRITERIA = {"author": "author_id", "related": "replaces_id", "relatesto": "replaces_id"}


def _type_displays() -> dict[str, str]:
    return {**TYPE_LABELS, **{c: k.display for c, k in valuesets.document_types().concepts.items()}}


# :text searches the display names this server writes (those of the national value sets).
TEXT_DISPLAYS: dict[str, Callable[[], dict[str, str]]] = {
    "type": _type_displays,
    "setting": lambda: {c: k.display for c, k in valuesets.practice_settings().concepts.items()},
    "facility": lambda: {c: k.display for c, k in valuesets.facility_types().concepts.items()},
}
# The modifiers served, per FHIR type (for the first check) and per parameter.
DOCREF_MODIFIERS = {
    "token": frozenset({"not", "text", "missing"}),
    "date": frozenset({"missing"}),
    "reference": frozenset({"identifier", "missing"}),
}
PARAMETER_MODIFIERS = {
    "not": frozenset({*TOKEN_CRITERIA, "status", "event"}),
    "text": frozenset(TEXT_DISPLAYS),
    "missing": frozenset({*TOKEN_CRITERIA, *DATE_CRITERIA, *REFERENCE_CRITERIA, "event"}),
    "identifier": frozenset({"patient", "subject", "author"}),
}
SUPPORTED = frozenset({*DOCREF_PARAMETERS, *fhir_params.CONTROL})
MAX_COUNT = 100
STATUSES = ("current", "superseded", "entered-in-error")


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
    # The INS the search named without a system (the 404 then says which OID was assumed).
    bare_ins: str | None = None
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
    refused = []
    for p in applied:
        if p.modifier is not None and p.name not in PARAMETER_MODIFIERS[p.modifier]:
            refused.append(f"modifier {p.modifier!r} of {p.name!r} is not supported")
            continue
        if p.modifier == "missing" and p.value not in ("true", "false"):
            raise BadRequest(f"{p.name}:missing takes true or false, not {p.value!r}")
        name = "patient" if p.name == "subject" else p.name
        if p.modifier == "identifier":
            items.append((f"{name}.identifier", p.value))
        else:
            items.append((f"{name}:{p.modifier}" if p.modifier else name, p.value))
    if refused and not lenient_handling:
        raise BadRequest("; ".join(refused) + " (Prefer: handling=lenient ignores them)")
    return QueryParams(items)


def _negations(params: QueryParams) -> tuple[SearchCriteria, bool]:
    """The :not, :missing and ``ne`` criteria as the records layer takes them, and whether one
    can never match (an element every document has, asked missing)."""
    excluded: dict[str, set[str]] = {}
    missing: dict[str, bool] = {}
    impossible = False
    for name, criterion in TOKEN_CRITERIA.items():
        values = _tokens(params, f"{name}:not")
        if values:
            excluded.setdefault(criterion, set()).update(values)
    for name, criterion in {**TOKEN_CRITERIA, **DATE_CRITERIA, **REFERENCE_CRITERIA}.items():
        for value in params.getlist(f"{name}:missing"):
            absent = value == "true"
            if missing.get(criterion, absent) != absent:
                impossible = True  # both missing and present
            missing[criterion] = absent
    # No document carries an event code: event:missing=false matches none.
    impossible |= "false" in params.getlist("event:missing")
    outside = [
        (criterion, *fhir_params.interval(text, name))
        for name, criterion in DATE_CRITERIA.items()
        for prefix, text in map(fhir_params.split_prefix, params.getlist(name))
        if prefix == "ne"
    ]
    return (
        SearchCriteria(
            excluded=tuple((k, tuple(sorted(v))) for k, v in sorted(excluded.items())),
            missing=tuple(sorted(missing.items())),
            outside=tuple(outside),
        ),
        impossible,
    )


def _by_text(params: QueryParams, name: str) -> tuple[str, ...] | None:
    """The codes whose display name contains every ``name:text`` value (case and accents
    ignored): FHIR :text, matched as the display names this server writes."""
    texts = params.getlist(f"{name}:text")
    if not texts:
        return None
    displays = TEXT_DISPLAYS[name]()
    return tuple(
        sorted(
            code
            for code, display in displays.items()
            if all(
                any(
                    fhir_params.normalise(t) in fhir_params.normalise(display) for t in v.split(",")
                )
                for v in texts
            )
        )
    )


def _and(*alternatives: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """Several criteria on one element: a document must meet each (None: no criterion)."""
    given = [set(a) for a in alternatives if a is not None]
    if not given:
        return None
    return tuple(sorted(set.intersection(*given)))


def parse_document_search(params: QueryParams, *, test_mode: bool) -> DocumentSearch:
    """ITI-67 criteria from parameters already checked by :func:`applied_parameters`."""
    patient: PatientRef
    ids = _document_ids(params)
    if params.get("patient.identifier"):
        patient = ins_param(params["patient.identifier"], test_mode=test_mode)
    elif params.get("patient"):
        value = params["patient"]
        patient = patient_ref(
            value if value.startswith("Patient") else f"Patient/{value}", test_mode=test_mode
        )
    elif ids:
        # A resource id carries its patient's key (decision 0004): ``_id`` alone names the record.
        patient = ids[0][0]
    else:
        raise BadRequest("patient, patient.identifier or _id is required (ITI-67)")
    archived = params.get("isArchived")
    status = _tokens(params, "status")
    not_status = _tokens(params, "status:not") or ()
    for s in not_status:
        if s not in STATUSES:
            raise BadRequest(f"unknown status {s!r}")
    if not_status:
        status = tuple(s for s in status or STATUSES if s not in not_status)
    statuses: set[str] = set()
    for s in status if status is not None else ("current",):
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
    # _count=0: the total alone (FHIR R4 3.1.1.5.6), as _summary=count.
    if not 0 <= count <= MAX_COUNT or not 0 <= offset <= MAX_OFFSET:
        raise BadRequest(f"_count must be 0 to {MAX_COUNT}, _offset 0 to {MAX_OFFSET}")
    fhir_params.total_mode(params)
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
    if identifiers is not None:  # an OID under either of its forms (dmp.domain.codes)
        identifiers = tuple(f for i in identifiers for f in unique_id_forms(i))
    related = [
        r.removeprefix("DocumentReference/").split(".")[-1]
        for r in (_tokens(params, "related") or ()) + (_tokens(params, "relatesto") or ())
    ]
    negations, never = _negations(params)
    criteria = dataclasses.replace(
        negations,
        class_codes=_tokens(params, "category"),
        format_codes=_tokens(params, "format"),
        facility_types=_and(_tokens(params, "facility"), _by_text(params, "facility")),
        practice_settings=_and(_tokens(params, "setting"), _by_text(params, "setting")),
        unique_ids=identifiers,
        document_ids=tuple(logical for _, logical in ids) or None,
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
        type_codes=_and(_tokens(params, "type"), _by_text(params, "type")),
        service_from=service_from,
        service_to=service_to,
        criteria=criteria,
        count=count,
        offset=offset,
        # No document carries an event code: a positive event criterion matches none. Ids of
        # another patient's documents match none of this one's.
        impossible=bool(params.get("event"))
        or never
        or not statuses
        or any(key != patient for key, _ in ids if isinstance(patient, PatientKey)),
        bare_ins=_bare_ins(params),
    )


def _document_ids(params: QueryParams) -> list[tuple[PatientKey, str]]:
    """The ``_id`` values: this server's DocumentReference ids (``<patient key>.<id>``); one
    that is not one matches nothing, and a search names one patient's documents only."""
    ids = []
    for value in _tokens(params, "_id") or ():
        try:
            ids.append(parse_doc_id(value))
        except InvalidInput:
            ids.append((PatientKey("-"), "-"))  # matches no stored document
    if len({key for key, _ in ids if key.id != "-"}) > 1:
        raise BadRequest("_id: the documents of one patient per search")
    return ids


def _bare_ins(params: QueryParams) -> str | None:
    value = params.get("patient.identifier")
    return value if value is not None and "|" not in value else None


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
    if count and offset + count < total:
        links["next"] = url(offset + count)
    if offset > 0:
        links["previous"] = url(max(0, offset - count))
    return links
