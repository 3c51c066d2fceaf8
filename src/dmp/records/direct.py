"""The hottest statements on the driver's cursor, their SQL rendered once (PostgreSQL).

A consultation runs four statements (the INS lookup when the process does not know the
patient's key yet, the facts, the page of documents, the audit append); a publication a few
more (the unique-id check, the chain head's lock, the record's data key, the document, its
content's chunks, its notices, its submission set). Through SQLAlchemy
each costs about twice what it costs on psycopg's cursor: SQLAlchemy looks its compiled form up
in its cache by a key it computes from the statement at every execution, builds an execution
context, then a result with its metadata and a ``Row`` per row. Here a statement that is built
once (the callers cache theirs) is compiled once per dialect; its execution hands psycopg the
SQL text and the values, each through the bind processor of its type, and reads plain tuples
back, each value through its type's result processor: what SQLAlchemy would have done, without
the work around it. On any other engine the statement runs through SQLAlchemy as before.

What stays SQLAlchemy's: the connection and its transaction (the statement runs on the same
driver connection, in the transaction SQLAlchemy began, or begins one as SQLAlchemy would), the
listeners of ``before_cursor_execute`` (fired here as SQLAlchemy fires them, without an
execution context, so the tests that record every statement see these), and the handling of
driver errors (a psycopg error goes through the connection's own handler: wrapped as SQLAlchemy
wraps it, the engine's ``handle_error`` listener turning unavailability into a 503, a lost
connection invalidated). An expanding ``IN``
(which SQLAlchemy renders at each execution, a parameter per value) is sent as PostgreSQL reads
an ``IN`` list anyway, ``= ANY`` (``<> ALL`` for ``NOT IN``) of one array parameter; any other
statement SQLAlchemy renders at execution runs through SQLAlchemy. An INSERT names the columns
its values give, as SQLAlchemy renders it (the others take their server defaults; one plan per
set of columns); one whose table computes a default in Python is left to SQLAlchemy; several
rows go in one ``executemany``.
``tests/test_direct_statements.py`` compares both paths on every statement that takes this one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import psycopg
import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

_Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class Rows:
    """A statement's result: its column names and its rows as tuples."""

    keys: tuple[str, ...]
    rows: Sequence[Sequence[Any]]

    def first(self) -> dict[str, Any] | None:
        """The first row by column name, or None."""
        return dict(zip(self.keys, self.rows[0], strict=True)) if self.rows else None

    def scalar(self) -> Any:
        """The first column of the first row, or None."""
        return self.rows[0][0] if self.rows else None


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    names: tuple[str, ...]  # the bound parameters, in the order of their processors
    binds: tuple[_Processor, ...]
    defaults: dict[str, Any]  # values the statement binds itself
    keys: tuple[str, ...]
    results: tuple[tuple[int, Callable[[Any], Any]], ...]  # the columns a type reads, by index
    returns: bool


_plans: dict[tuple[Any, ...], tuple[ClauseElement, _Plan | None]] = {}
_plans_lock = threading.Lock()
_MAX_PLANS = 4096  # the callers cache at most 1,024 search shapes, and a handful of others


def execute(conn: Connection, statement: ClauseElement, params: dict[str, Any]) -> Rows:
    """Run ``statement`` (built once by its caller) with ``params``: on PostgreSQL on the
    driver's cursor, elsewhere through SQLAlchemy; the rows as tuples with their column names."""
    plan = _plan(conn.dialect, statement, params) if conn.dialect.name == "postgresql" else None
    if plan is None:
        result = conn.execute(cast(Executable, statement), params)
        if not result.returns_rows:
            return Rows((), ())
        return Rows(tuple(result.keys()), [tuple(r) for r in result.all()])
    values = _bound(plan, params)
    rows = _run(conn, plan, values, many=False)
    if plan.results:
        processed = []
        for row in rows:
            read = list(row)
            for i, process in plan.results:
                read[i] = process(read[i])
            processed.append(tuple(read))
        rows = processed
    return Rows(plan.keys, rows)


def execute_many(
    conn: Connection, statement: ClauseElement, rows: Sequence[dict[str, Any]]
) -> None:
    """Run an INSERT without RETURNING once per row of ``rows`` (all naming the same columns),
    in one driver call on PostgreSQL, elsewhere through SQLAlchemy's executemany."""
    if not rows:
        return
    columns = rows[0].keys()
    plan = (
        _plan(conn.dialect, statement, rows[0])
        if conn.dialect.name == "postgresql" and all(r.keys() == columns for r in rows)
        else None
    )
    if plan is None or plan.returns:
        conn.execute(cast(Executable, statement), list(rows))
        return
    _run(conn, plan, [_bound(plan, r) for r in rows], many=True)


def _bound(plan: _Plan, params: dict[str, Any]) -> dict[str, Any]:
    """The values the statement binds, each through its type's processor."""
    values = dict(plan.defaults)
    values.update(params)
    for name, bind in zip(plan.names, plan.binds, strict=True):
        if name not in values:
            raise sa.exc.ArgumentError(f"a value is required for bind parameter {name!r}")
        if bind is not None:
            values[name] = bind(values[name])
    return values


def _run(conn: Connection, plan: _Plan, values: Any, *, many: bool) -> Sequence[Sequence[Any]]:
    """The statement on the driver's cursor, in the connection's transaction; its rows."""
    if not conn.in_transaction():
        conn.begin()  # as SQLAlchemy's execute begins one: its commit then commits this
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    cursor = driver.cursor()
    try:
        conn.dispatch.before_cursor_execute(conn, cursor, plan.sql, values, None, many)
        if many:
            cursor.executemany(plan.sql, values)
            return []
        cursor.execute(plan.sql, values)
        return cursor.fetchall() if plan.returns else []
    except psycopg.Error as failure:
        # SQLAlchemy's own path for a driver error: wrapped, handle_error, disconnects.
        conn._handle_dbapi_exception(failure, plan.sql, values, cast(Any, cursor), None)  # noqa: SLF001
        raise  # pragma: no cover - the handler always raises
    finally:
        cursor.close()


def _plan(dialect: Dialect, statement: ClauseElement, params: dict[str, Any]) -> _Plan | None:
    # An INSERT names the columns it is given (the others take their server defaults), as
    # SQLAlchemy renders it: one plan per set of columns.
    insert = isinstance(statement, sa.Insert)
    columns = frozenset(params) if insert else frozenset()
    key = (id(statement), dialect.name, columns) if insert else (id(statement), dialect.name)
    found = _plans.get(key)
    if found is not None and found[0] is statement:
        return found[1]
    plan = _compile(dialect, statement, sorted(columns) if insert else None)
    with _plans_lock:
        if len(_plans) >= _MAX_PLANS:
            _plans.clear()  # shapes of searches beyond any real use: compiled again on demand
        # The statement is kept with its plan, so its id is not reused while the plan lives.
        _plans[key] = (statement, plan)
    return plan


def _compile(
    dialect: Dialect, statement: ClauseElement, inserted: list[str] | None
) -> _Plan | None:
    compiled = statement.compile(dialect=dialect, column_keys=inserted)
    assert isinstance(compiled, SQLCompiler)
    if compiled.insert_prefetch or compiled.update_prefetch:
        return None  # a default computed in Python at execution: SQLAlchemy's to compute
    sql = compiled.string
    lists = frozenset(n for n, b in compiled.binds.items() if b.expanding)
    for name in lists:
        # An expanding IN, which SQLAlchemy renders at each execution as one parameter per
        # value, as PostgreSQL reads it anyway: a comparison with ANY (ALL) element of an array.
        sql = sql.replace(f"NOT IN (__[POSTCOMPILE_{name}])", f"<> ALL (%({name})s)")
        sql = sql.replace(f"IN (__[POSTCOMPILE_{name}])", f"= ANY (%({name})s)")
    if "POSTCOMPILE" in sql or compiled.positional:
        return None  # rendered at execution some other way, or not psycopg's named style
    names = tuple(compiled.binds)
    binds = tuple(
        _listed(processor) if n in lists else processor
        for n in names
        for processor in (compiled.binds[n].type.dialect_impl(dialect).bind_processor(dialect),)
    )
    defaults = {
        n: b.value for n, b in compiled.binds.items() if not b.required and b.callable is None
    }
    columns = _result_columns(statement)
    keys = tuple(name for name, _ in columns)
    readers = (t.dialect_impl(dialect).result_processor(dialect, None) for _, t in columns)
    results = tuple((i, r) for i, r in enumerate(readers) if r is not None)
    return _Plan(sql, names, binds, defaults, keys, results, bool(columns))


def _listed(processor: _Processor) -> _Processor:
    """An expanding parameter's values as the list psycopg sends as an array, each value
    through its type's processor."""
    if processor is None:
        return list
    each = processor
    return lambda values: [each(v) for v in values]


def _result_columns(statement: ClauseElement) -> list[tuple[str, sa.types.TypeEngine[Any]]]:
    """A SELECT's columns, or an INSERT's RETURNING ones (none for a plain command)."""
    if not isinstance(statement, sa.sql.expression.ReturnsRows):
        return []
    return [(c.key, c.type) for c in statement.exported_columns]
