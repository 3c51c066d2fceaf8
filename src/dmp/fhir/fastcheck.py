"""A strict and cheap check of a FHIR resource, compiled from the ``fhir.resources`` R4B models.

Validating a 45 KB ITI-65 Bundle with the models builds a pydantic model per element and runs
their Python validators: about half a millisecond, a tenth of a publication's server time. The
check here walks the JSON once against tables compiled from the same models (their fields and
aliases, the types and regular expressions of their primitives, their required elements and their
choice groups ``value[x]``) and answers:

- ``True`` only when the models accept the resource: every key one the model names (by its JSON
  name), JSON of the exact type, primitives matching the models' patterns and bounds, required
  elements present with a value, at most one element of a choice group (exactly one if required);
- ``False`` for anything it is not sure of, valid or not: nulls, empty strings, primitive
  extensions (``_status``), comments, decimals written as floats, leap seconds, UUID
  primitives, an unknown ``resourceType``... The caller then validates with the
  models, which give the error, if any.

So it never decides that a resource is invalid, and it can only be wrong by accepting what the
models refuse: ``tests/test_fhir_fastcheck.py`` proves by property test, over mutations of real
ITI-65, ITI-105 and PDSm resources, that it does not.
"""

from __future__ import annotations

import binascii
import re
import threading
import types
import typing
from collections.abc import Callable
from datetime import date, datetime, time
from functools import partial
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir_core import constraints as fhir_constraints
from fhir_core import types as fhir_types
from fhir_core.fhirabstractmodel import FHIRAbstractModel

Check = Callable[[Any], bool]

__all__ = ["accepts", "foreign_resource"]


def accepts(model: type[FHIRAbstractModel], resource: Any) -> bool:
    """True when ``model.model_validate(resource)`` is certain to succeed; False when unsure."""
    return _compiled(model).check(resource)


def foreign_resource(node: Any, loc: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """Where a ``resourceType`` names no FHIR R4 resource: the first such place, or None. Asked
    only once the models have failed outside their validation errors (a KeyError or a
    TypeError there), to name the place in the answer."""
    if isinstance(node, dict):
        if "resourceType" in node:
            kind = node["resourceType"]
            if type(kind) is not str or _resource_model(kind) is None:
                return loc
        for key, value in node.items():
            found = foreign_resource(value, (*loc, key))
            if found is not None:
                return found
    elif isinstance(node, list):
        for n, value in enumerate(node):
            found = foreign_resource(value, (*loc, n))
            if found is not None:
                return found
    return None


class _Model:
    """One model's table: its elements by JSON name, required ones, choice groups."""

    __slots__ = ("choices", "fields", "ready", "required", "resource_type")

    def __init__(self) -> None:
        self.fields: dict[str, Check] = {}
        self.required: frozenset[str] = frozenset()
        self.choices: tuple[tuple[frozenset[str], bool], ...] = ()
        self.resource_type: str | None = None
        self.ready = False

    def check(self, value: Any) -> bool:
        if type(value) is not dict or not self.ready:
            return False
        fields = self.fields
        for key, item in value.items():
            element = fields.get(key)
            if element is None:
                if key != "resourceType" or self.resource_type is None:
                    return False
                if item != self.resource_type:
                    return False
                continue
            if not element(item):
                return False
        if self.resource_type is not None and "resourceType" not in value:
            return False
        keys = value.keys()
        if not self.required <= keys:
            return False
        for group, required in self.choices:
            given = len(group & keys)
            if given > 1 or (required and given == 0):
                return False
        return True


_models: dict[type[FHIRAbstractModel], _Model] = {}
_compiling = threading.Lock()


def _compiled(model: type[FHIRAbstractModel]) -> _Model:
    found = _models.get(model)
    if found is not None:
        return found
    with _compiling:
        fresh: list[_Model] = []
        table = _table(model, fresh)
        for each in fresh:  # a model is used only once the whole graph it reaches is compiled
            each.ready = True
        return table


def _table(model: type[FHIRAbstractModel], fresh: list[_Model]) -> _Model:
    found = _models.get(model)
    if found is not None:
        return found
    table = _Model()
    _models[model] = table  # registered before its fields: elements refer to each other
    fresh.append(table)
    if model.has_resource_base():
        table.resource_type = model.get_resource_type()
    blank = model.model_construct()
    names = {name: info.alias or name for name, info in model.model_fields.items()}
    required = {names[name] for name, info in model.model_fields.items() if info.is_required()}
    required.update(names[name] for name, _ext in blank.get_required_fields())
    table.required = frozenset(required)
    table.choices = tuple(
        (
            frozenset(names[name] for name in group),
            model.model_fields[group[0]].json_schema_extra["one_of_many_required"] is True,  # type: ignore[index]
        )
        for group in blank.get_one_of_many_fields().values()
    )
    for name, info in model.model_fields.items():
        alias = names[name]
        if name == "fhir_comments" or alias.startswith("_"):
            continue  # comments and primitive extensions: left to the models
        table.fields[alias] = _element(info.annotation, list(info.metadata), fresh)
    return table


def _element(annotation: Any, metadata: list[Any], fresh: list[_Model]) -> Check:
    """The check of one element: a list of items or one item, never null."""
    inner, is_list = _unwrap(annotation)
    if typing.get_origin(inner) is typing.Annotated:
        base, *more = typing.get_args(inner)
        item = _item(base, more + metadata, fresh)
    else:
        item = _item(inner, metadata, fresh)
    if is_list:
        return partial(_list_of, item)
    return item


def _list_of(item: Check, value: Any) -> bool:
    return type(value) is list and bool(value) and all(map(item, value))


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """``Optional[List[Optional[X]]]`` -> (X, True); ``X | None`` -> (X, False). A null is
    refused wherever it stands (in a list of primitives the models keep it, as a placeholder)."""
    annotation = _not_null(annotation)
    if typing.get_origin(annotation) is list:
        return _not_null(typing.get_args(annotation)[0]), True
    return annotation, False


def _not_null(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else typing.Any  # Any: no check, left to the models
    return annotation


def _never(_value: Any) -> bool:
    return False


def _item(base: Any, metadata: list[Any], fresh: list[_Model]) -> Check:
    if isinstance(base, type) and issubclass(base, fhir_types.FhirBase):
        target = base.get_model_klass()
        if issubclass(base, fhir_types.FhirElementOrResourceBase):
            if target.__name__ == "Resource":
                return _any_resource
            return _never  # an element of any type: rare, left to the models
        return _table(target, fresh).check
    if base is bool:
        return _is_bool
    for meta in metadata:
        primitive = _primitive(meta)
        if primitive is not None:
            return primitive
    return _never


def _any_resource(value: Any) -> bool:
    if type(value) is not dict:
        return False
    kind = value.get("resourceType")
    if type(kind) is not str:
        return False
    model = _resource_model(kind)
    return model is not None and _compiled(model).check(value)


_resource_classes: dict[str, type[FHIRAbstractModel] | None] = {}


def _resource_model(kind: str) -> type[FHIRAbstractModel] | None:
    if kind not in _resource_classes:
        try:
            model = get_fhir_model_class(kind)
        except (KeyError, ValueError, ImportError, AttributeError):
            model = None
        if model is not None and not model.has_resource_base():
            model = None
        if len(_resource_classes) < 1024:  # resource types are a few hundred; names are input
            _resource_classes[kind] = model
        return model
    return _resource_classes[kind]


def _is_bool(value: Any) -> bool:
    return type(value) is bool


def _primitive(meta: Any) -> Check | None:
    """The check of a FHIR primitive from its marker in the model's annotation."""
    kind = type(meta)
    if kind in _DATES:
        return partial(_when, kind.pattern, _DATES[kind])
    if kind is fhir_types.Base64Binary:
        return _is_base64
    if kind is fhir_types.Url:
        return partial(_is_text, _NO_SPACE, 1, None)
    if kind is fhir_types.Xhtml:  # the models take any string (our narrative checks come later)
        return partial(_is_text, _ANY_TEXT, 1, None)
    if kind is fhir_types.Decimal:
        return _is_decimal
    if issubclass(kind, fhir_types.Integer | fhir_types.Integer64):
        return partial(_is_integer, meta.min_length, meta.max_length)
    if kind is fhir_types.Id:
        pattern = fhir_constraints.TYPES_ID_PATTERN or r"\S+"
        longest = fhir_constraints.TYPES_ID_MAX_LENGTH
        return partial(_is_text, re.compile(pattern), meta.min_length or 1, longest)
    if kind in (fhir_types.String, fhir_types.Code) or issubclass(
        kind, fhir_types.PatternConstraint
    ):
        patterns = [getattr(m, "pattern", None) for m in meta]
        found = [p for p in patterns if isinstance(p, str)]
        if len(found) != 1 or getattr(meta, "allow_empty_str", False):
            return None
        return partial(_is_text, re.compile(found[0]), 1, None)
    return None  # uuid, anything new: left to the models


_NO_SPACE = re.compile(r"\S+")
_ANY_TEXT = re.compile(r".+", re.DOTALL)


def _is_text(pattern: re.Pattern[str], shortest: int, longest: int | None, value: Any) -> bool:
    """A JSON string that matches the model's pattern as a whole (pydantic only searches it)."""
    if type(value) is not str or len(value) < shortest:
        return False
    if longest is not None and len(value) > longest:
        return False
    return pattern.fullmatch(value) is not None


def _is_integer(lowest: int, highest: int, value: Any) -> bool:
    return type(value) is int and lowest <= value <= highest


def _is_decimal(value: Any) -> bool:
    # an integer always reads as a decimal; a float's text form is left to the models
    return type(value) is int


def _is_base64(value: Any) -> bool:
    if type(value) is not str or not value or not value.isascii():
        return False
    try:
        binascii.a2b_base64(value, strict_mode=True)
    except binascii.Error:
        return False
    return True


# A date or time that Python reads and whose fraction has at most microseconds: pydantic reads it
# too. A leap second (":60") is left to the models.
_FRACTION = re.compile(r"\.([0-9]+)")


def _when(pattern: re.Pattern[str], parse: Callable[[str], object], value: Any) -> bool:
    if type(value) is not str or pattern.fullmatch(value) is None or ":60" in value:
        return False
    fraction = _FRACTION.search(value)
    if fraction is not None and len(fraction.group(1)) > 6:
        return False
    if len(value) < 10 and parse is not _read_time:
        return True  # a year, or a year and month: kept as written, the pattern suffices
    try:
        parse(value)
    except ValueError:
        return False
    return True


_read_time = time.fromisoformat  # one object: ``_when`` tells it by identity
_DATES: dict[type, Callable[[str], object]] = {
    fhir_types.Date: date.fromisoformat,
    fhir_types.DateTime: datetime.fromisoformat,
    fhir_types.Instant: datetime.fromisoformat,
    fhir_types.Time: _read_time,
}
