"""psycopg's cursor, with a result's column descriptions built when first read.

psycopg builds a ``Column`` object per column of every result when ``cursor.description`` is
read, and SQLAlchemy reads it after every statement, if only to learn whether the statement
returned rows: for a statement it has already run, it takes the columns from its cache and
never looks at them. A consultation reads about seventy columns over its statements, a few
per cent of its CPU (docs/performance.md). Here the description is a sequence that knows its
length from the result and asks psycopg for the columns only when someone reads one; it
answers for the result it was taken from, or fails loudly if the cursor has moved on since.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

import psycopg
from psycopg import Column
from psycopg.pq import ExecStatus

_ROWS = frozenset(
    s for s in (ExecStatus.TUPLES_OK, ExecStatus.SINGLE_TUPLE, ExecStatus.TUPLES_CHUNK)
)


class Columns(Sequence[Column]):
    """The columns of one result, built by psycopg on first read."""

    __slots__ = ("_built", "_cursor", "_result")

    def __init__(self, cursor: Cursor, result: Any) -> None:
        self._cursor = cursor
        self._result = result
        self._built: list[Column] | None = None

    def _columns(self) -> list[Column]:
        if self._built is None:
            if self._cursor.pgresult is not self._result:
                raise RuntimeError("a result's columns read after its cursor moved on")
            self._built = _psycopg_description(self._cursor) or []
        return self._built

    def __len__(self) -> int:
        return int(self._result.nfields)

    @overload
    def __getitem__(self, index: int) -> Column: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Column]: ...

    def __getitem__(self, index: int | slice) -> Column | Sequence[Column]:
        return self._columns()[index]

    def __iter__(self) -> Iterator[Column]:
        return iter(self._columns())

    def __repr__(self) -> str:
        return repr(self._columns())


def _psycopg_description(cursor: Cursor) -> list[Column] | None:
    """psycopg's own description of the cursor's current result."""
    return psycopg.Cursor.description.__get__(cursor)  # type: ignore[no-any-return]


class Cursor(psycopg.Cursor[Any]):
    """The engine's cursor (``cursor_factory``): psycopg's, but for ``description``."""

    @property
    def description(self) -> Columns | None:  # type: ignore[override]
        result = self.pgresult
        # When psycopg's own description is not None: the same test, without the columns.
        if result and (result.nfields or result.status in _ROWS):
            return Columns(self, result)
        return None
