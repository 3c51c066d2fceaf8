"""The compiled FHIR check (`dmp.fhir.fastcheck`) never accepts what the `fhir.resources` models
refuse, and it accepts the resources publishers really send, so that the publication skips the
models' cost.

The property: over mutations of real resources (the PDSm and DMP examples under
`tests/fixtures`, the Bundle the load test publishes), whenever the compiled check says yes the
models say yes too. Mutations change a value (to other JSON types, nulls, empties, odd
whitespace, dates near the edges of the calendar), drop or add keys (unknown names, primitive
extensions, comments, a second choice ``value[x]``), wrap a value in a list or unwrap it, and
change a ``resourceType``. DMP_FASTCHECK_EXAMPLES runs it longer."""

from __future__ import annotations

import copy
import importlib
import json
import os
import pkgutil
import re
from pathlib import Path
from typing import Any

import pytest
from bench.load import iti65_bundle
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.extension import Extension
from hypothesis import event, given
from hypothesis import strategies as st
from pydantic import ValidationError

from dmp.fhir import common, fastcheck
from tests.repeatable import repeatable

EXAMPLES = int(os.environ.get("DMP_FASTCHECK_EXAMPLES", "1500"))
FIXTURES = Path(__file__).parent / "fixtures"


def _seeds() -> list[dict[str, Any]]:
    found = [json.loads(p.read_text()) for p in sorted(FIXTURES.rglob("*.json"))]
    content = b"<ClinicalDocument>fictional</ClinicalDocument>" * 20
    published = iti65_bundle("180126345678910", "10001234567", content)
    found.append(json.loads(json.dumps(published).replace("__UID__", "4242")))
    return [r for r in found if isinstance(r, dict) and "resourceType" in r]


SEEDS = _seeds()


def _models_accept(model: Any, resource: Any) -> bool:
    try:
        model.model_validate(copy.deepcopy(resource))
    except ValidationError:
        return False
    except (KeyError, ValueError, TypeError, AttributeError):
        # the models' own failures on some shapes (an unknown resourceType, a url that is no
        # string): validate_resource answers them with a 422 too
        return False
    return True


def test_the_check_accepts_what_publishers_send() -> None:
    assert len(SEEDS) >= 20
    for resource in SEEDS:
        model = get_fhir_model_class(resource["resourceType"])
        assert _models_accept(model, resource), resource.get("id")
        assert fastcheck.accepts(model, resource), resource.get("id")


def test_a_resource_the_check_accepts_is_not_validated_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = SEEDS[-1]
    called: list[Any] = []
    monkeypatch.setattr(Bundle, "model_validate", lambda *a, **k: called.append(a))
    common.validate_resource(Bundle, bundle, "Bundle")
    assert called == []
    unsure = copy.deepcopy(bundle)
    unsure["entry"][0]["resource"]["_status"] = {"extension": []}
    common.validate_resource(Bundle, unsure, "Bundle")
    assert len(called) == 1  # what it is unsure of goes to the models


def test_every_r4b_model_compiles() -> None:
    """A resource of any type may come contained in a submission: every model of the library
    compiles (a shape the check does not know is left to the models, never an error)."""
    import fhir.resources.R4B as r4b

    models = set()
    for info in pkgutil.iter_modules(r4b.__path__):
        module = importlib.import_module(f"fhir.resources.R4B.{info.name}")
        for value in vars(module).values():
            ours = isinstance(value, type) and value.__module__ == module.__name__
            if ours and hasattr(value, "model_fields"):
                models.add(value)
    assert len(models) > 600
    for model in models:
        fastcheck.accepts(model, {})  # compiles it, or raises


REFUSED_BY_THE_MODELS: list[tuple[Any, dict[str, Any]]] = [
    (Coding, {"code": ""}),
    (Coding, {"code": "a  b"}),
    (Coding, {"code": " a"}),
    (Coding, {"display": "\x0b"}),
    (Coding, {"version": 5}),
    (Coding, {"userSelected": "maybe"}),
    (Coding, {"resourceType": "Codingx", "code": "x"}),
    (Coding, {"unknown": "x"}),
    (Extension, {"url": "http://x", "valueString": "a", "valueCode": "b"}),
    (DocumentReference, {"resourceType": "DocumentReference", "status": "current"}),
    (DocumentReference, {"resourceType": "DocumentReference", "content": [{"attachment": {}}]}),
    (
        DocumentReference,
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "date": "2026-02-30T10:00:00Z",
            "content": [{"attachment": {}}],
        },
    ),
    (
        DocumentReference,
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "date": "2026-02-10",
            "content": [{"attachment": {}}],
        },
    ),
    (
        DocumentReference,
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "content": [{"attachment": {"size": -1}}],
        },
    ),
    (
        DocumentReference,
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "content": [{"attachment": {"data": "not base64!"}}],
        },
    ),
    (Bundle, {"resourceType": "Bundle", "type": "transaction", "entry": [None]}),
    (Bundle, {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": 1}]}),
    (Bundle, {"resourceType": "Patient", "type": "transaction"}),
]


@pytest.mark.parametrize(("model", "resource"), REFUSED_BY_THE_MODELS)
def test_what_the_models_refuse_the_check_does_not_accept(model: Any, resource: Any) -> None:
    assert not _models_accept(model, resource)
    assert not fastcheck.accepts(model, resource)


# --- mutations -------------------------------------------------------------------------------

_ODD_TEXT = st.text(alphabet=" \t\r\n\x0b\x0c\x1c\x85\u00a0\u2028\u3000aZ09:./+=-#|_é", max_size=8)


# Days the calendar does not have, in each form: the patterns let them through, a parser not.
_NO_SUCH_DAYS = [
    "2025-02-29",
    "2026-02-30",
    "2026-04-31",
    "2026-02-30T10:00:00Z",
    "2026-04-31T23:59:59+01:00",
    "2025-02-29T10:00:00.5-05:00",
]


def _dates() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(_NO_SUCH_DAYS), _date_parts())


@st.composite
def _date_parts(draw: st.DrawFn) -> str:
    year = draw(st.sampled_from(["0000", "0001", "2024", "2025", "9999", "20261", "26"]))
    month = draw(st.sampled_from(["", "-00", "-02", "-02", "-04", "-12", "-13", "-1"]))
    day = draw(st.sampled_from(["", "-00", "-01", "-29", "-30", "-31", "-31", "-32"]))
    clock = draw(
        st.sampled_from(["", "T10:00", "T10:00:00", "T23:59:59", "T23:59:60", "T24:00:00"])
    )
    fraction = draw(st.sampled_from(["", ".", ".1", ".123456", ".1234567", ".123456789"]))
    zone = draw(st.sampled_from(["", "Z", "+01:00", "-13:59", "+14:00", "+14:01", "+1:00"]))
    return year + month + day + clock + fraction + zone


_VALUES = st.one_of(
    st.sampled_from(
        [
            None,
            "",
            " ",
            "x",
            "a b",
            "a  b",
            "true",
            "urn:oid:1.2.250",
            "urn:oid:1.02",
            "aGVsbG8=",
            "aGVsbG8",
            "current",
            "transaction",
            "Patient",
            "Binary",
            "Coding",
            "DomainResource",
            "12:30:00",
            "25:00:00",
            [],
            {},
            [None],
            [{}],
            {"extension": []},
            {"reference": "Patient/1"},
            {"system": "http://x", "code": "x"},
        ]
    ),
    _ODD_TEXT,
    _dates(),
    st.booleans(),
    st.integers(min_value=-(2**33), max_value=2**33),
    st.floats(allow_nan=True, allow_infinity=True),
)

_KEYS = [
    "resourceType",
    "_status",
    "fhir_comments",
    "resource_type",
    "foo",
    "id",
    "extension",
    "status",
    "text",
    "div",
    "url",
    "valueString",
    "valueCode",
    "valueBoolean",
    "valueIdentifier",
    "system",
    "code",
    "value",
    "reference",
    "type",
    "content",
    "attachment",
    "data",
    "size",
    "total",
    "date",
    "creation",
    "timestamp",
    "birthDate",
]


def _places(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every value's path in the resource, the resource itself first."""
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _places(value, (*path, key))
    elif isinstance(node, list):
        for n, value in enumerate(node):
            found += _places(value, (*path, n))
    return found


def _at(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


_CHOICES = ("value", "effective", "deceased", "onset", "multipleBirth", "timing")


_LOOKS_LIKE_A_DATE = re.compile(r"[0-9]{4}(-[0-9]{2}(-[0-9]{2}(T[0-9:.]+(Z|[+-][0-9:]+)?)?)?)?")


def _fresh(value: Any) -> Any:
    """A copy: the strategies hand out the same list or dict at every draw, and a later
    mutation of this resource must not change what the next examples draw."""
    return copy.deepcopy(value)


def _mutate(data: st.DataObject, resource: dict[str, Any]) -> None:
    """One mutation, at a place suited to it (a text edit at a string, a date at a string...)."""
    places = _places(resource)
    strings = [p for p in places if isinstance(_at(resource, p), str)]
    dates = [p for p in strings if _LOOKS_LIKE_A_DATE.fullmatch(_at(resource, p))] or strings
    base64s = [p for p in strings if re.fullmatch(r"[A-Za-z0-9+/]{8,}=*", _at(resource, p))]
    numbers = [p for p in places if type(_at(resource, p)) in (int, float, bool)]
    choices = [
        p
        for p in places
        if isinstance(_at(resource, p), dict)
        and any(k.startswith(_CHOICES) for k in _at(resource, p))
    ]
    dicts = [p for p in places if isinstance(_at(resource, p), dict)]
    how = data.draw(
        st.sampled_from(
            [
                "value",
                "drop",
                "add",
                "second choice",
                "wrap",
                "unwrap",
                "edit text",
                "edit text",
                "date",
                "date",
                "base64",
                "number",
            ]
        ),
        label="how",
    )
    suited = {
        "edit text": strings,
        "date": dates,
        "base64": base64s,
        "number": numbers,
        "second choice": choices,
        "add": dicts,
    }.get(how, places[1:])
    if not suited:
        return
    path = suited[data.draw(st.integers(0, len(suited) - 1), label="place")]
    node = _at(resource, path)
    parent = _at(resource, path[:-1]) if path else None
    if how == "value" and parent is not None:
        parent[path[-1]] = _fresh(data.draw(_VALUES, label="value"))
    elif how == "date" and parent is not None:
        parent[path[-1]] = data.draw(_dates(), label="date")
    elif how == "number" and parent is not None:
        parent[path[-1]] = data.draw(
            st.one_of(st.integers(-(2**63), 2**63), st.floats(), st.booleans(), st.just("1")),
            label="number",
        )
    elif how == "drop" and isinstance(parent, dict):
        del parent[path[-1]]
    elif how == "drop" and isinstance(parent, list):
        parent.pop(path[-1])
    elif how == "add" and isinstance(node, dict):
        key = data.draw(st.sampled_from(_KEYS + list(node)), label="key")
        node[key] = _fresh(
            data.draw(st.one_of(_VALUES, st.sampled_from(list(node.values()) or [1])))
        )
    elif how == "second choice" and isinstance(node, dict):
        given = next(k for k in node if k.startswith(_CHOICES))
        prefix = next(c for c in _CHOICES if given.startswith(c))
        other = data.draw(
            st.sampled_from(["String", "Code", "Boolean", "Uri", "DateTime", "Identifier"]),
            label="type",
        )
        node[prefix + other] = data.draw(
            st.sampled_from(["x", True, "urn:x", "2026-01-01", {"value": "x"}]).map(_fresh),
            label="value",
        )
    elif how == "wrap" and parent is not None:
        parent[path[-1]] = [node]
    elif how == "unwrap" and parent is not None and isinstance(node, list) and node:
        parent[path[-1]] = node[0]
    elif how == "base64" and parent is not None and isinstance(node, str):
        at = data.draw(st.integers(0, len(node)), label="at")
        odd = data.draw(st.sampled_from(["", "=", "A", "!", "-", "_", " ", "\n", "é"]))
        cut = data.draw(st.integers(0, 3), label="cut")
        parent[path[-1]] = node[:at] + odd + node[at + cut :]
    elif how == "edit text" and parent is not None and isinstance(node, str):
        at = data.draw(st.integers(0, len(node)), label="at")
        cut = data.draw(st.integers(0, 2), label="cut")
        parent[path[-1]] = node[:at] + data.draw(_ODD_TEXT, label="text") + node[at + cut :]


@repeatable(EXAMPLES)
@given(data=st.data())
def test_the_check_never_accepts_what_the_models_refuse(data: st.DataObject) -> None:
    seed = SEEDS[data.draw(st.integers(0, len(SEEDS) - 1), label="seed")]
    resource = copy.deepcopy(seed)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        _mutate(data, resource)
    kind = seed["resourceType"]
    model = get_fhir_model_class(kind)
    if fastcheck.accepts(model, resource):
        event("the check accepts")  # --hypothesis-show-statistics: how often each way
        assert _models_accept(model, resource), json.dumps(resource)[:2000]
    else:
        event("left to the models, which accept" if _models_accept(model, resource) else "refused")
