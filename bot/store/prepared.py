"""The per-text path's statements, compiled once per database and run on the driver.

A `Prepared` is a SQLAlchemy Core statement compiled once per dialect (an INSERT once per set
of columns given), with the bind and result processors SQLAlchemy itself would apply, and run
straight on the DBAPI connection of the caller's transaction: sqlite3 (the writer thread's)
or asyncpg through SQLAlchemy's adapter. SQLAlchemy's own `execute` costs about 150 µs of CPU
a statement even with its compiled cache (cache key, parameters, result set-up), more than
SQLite takes to run one, and a text runs about twenty. The statements stay Core, so each
database gets the SQL its dialect writes. `execute` raises the driver's errors as SQLAlchemy's
(`sa.exc.IntegrityError`, `sa.exc.DBAPIError` with `.orig`), as `Connection.execute` raises
them; `execute_on_driver` (asyncpg, outside SQLAlchemy) raises asyncpg's own, `.sqlstate` and
all.

`together_on_driver` runs several writes as one PostgreSQL statement, each a data-modifying
WITH query: one round trip instead of a BEGIN, a statement each and a COMMIT, and as atomic as
the transaction it replaces (one statement in autocommit commits all or nothing).
"""

from __future__ import annotations

import functools
import re
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler

# Told the SQL of every statement a Prepared runs (tests count statements with it; SQLAlchemy's
# before_cursor_execute event does not see them).
observers: list[Callable[[str], None]] = []

_Processor = Callable[[Any], Any] | None
_PLACEHOLDER = re.compile(r"\$(\d+)")  # asyncpg's numbered parameters


class Result:
    """A statement's rows (named tuples) and rowcount, read in full."""

    __slots__ = ("rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def first(self) -> Any:
        return self.rows[0] if self.rows else None

    def all(self) -> list[Any]:
        return self.rows

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def scalar_one(self) -> Any:
        if len(self.rows) != 1:
            raise sa.exc.NoResultFound(f"expected one row, got {len(self.rows)}")
        return self.rows[0][0]


class _Plan:
    """One statement as one dialect runs it: SQL, where each parameter comes from, and how
    bound values and result columns are processed."""

    def __init__(self, statement: sa.ClauseElement, dialect: Dialect, keys: Sequence[str] | None):
        compiled = statement.compile(dialect=dialect, column_keys=list(keys) if keys else None)
        assert isinstance(compiled, SQLCompiler)
        if not compiled.positional or compiled.positiontup is None:
            raise TypeError(f"{dialect.name}: a positional paramstyle is expected")
        self.sql = compiled.string
        # (parameter key, or None for a value fixed in the statement; the value; processor)
        self.slots: list[tuple[str | None, Any, _Processor]] = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                self.slots.append((bind.key, None, process))
            else:
                value = bind.effective_value
                self.slots.append((None, process(value) if process else value, None))
        self.parameters = _binder(self.slots)
        columns = list(getattr(statement, "exported_columns", ()))
        self.results: list[_Processor] = [
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
        ]
        names = [c.key or f"c{i}" for i, c in enumerate(columns)]
        self.row: Any = namedtuple("Row", names, rename=True) if names else None

    def rows(self, raw: Sequence[Any]) -> list[Any]:
        if self.row is None:
            return []
        make = self.row._make
        if not any(self.results):
            return [make(r) for r in raw]
        results = self.results
        return [make([p(v) if p else v for p, v in zip(results, r, strict=True)]) for r in raw]


class Prepared:
    """A Core statement run on the driver (see the module's docstring)."""

    def __init__(self, statement: sa.ClauseElement, by_columns: bool | None = None) -> None:
        """`by_columns`: compiled for the columns each call gives (an INSERT's default;
        False for one whose values are bound parameters already)."""
        self.statement = statement
        self._by_columns = isinstance(statement, sa.Insert) if by_columns is None else by_columns
        self._plans: dict[tuple[str, tuple[str, ...] | None], _Plan] = {}

    def _plan(self, dialect: Dialect, params: Mapping[str, Any]) -> _Plan:
        key = (dialect.name, tuple(params) if self._by_columns else None)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _Plan(self.statement, dialect, key[1])
        return plan

    def execute(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Result:
        """Run once; its rows (if it returns any) and rowcount."""
        params = params or {}
        plan = self._plan(conn.dialect, params)
        return _run(conn, plan, plan.parameters(params))

    async def execute_on_driver(
        self, conn: AsyncConnection, params: Mapping[str, Any] | None = None
    ) -> list[Any]:
        """Run once on an async connection's driver (asyncpg), outside SQLAlchemy's
        transaction handling: in autocommit when no transaction is open, one round trip."""
        params = params or {}
        plan = self._plan(conn.dialect, params)
        for observe in observers:
            observe(plan.sql)
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        return plan.rows(await driver.fetch(plan.sql, *plan.parameters(params)))


def _binder(
    slots: Sequence[tuple[str | None, Any, _Processor]],
) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A function from a statement's parameters to its driver's arguments, in order, written
    out for the statement (`lambda p: (p['phone'], f1(p['at']), v2)`): a text binds about a
    hundred values, and a loop over the slots cost a tenth of the writer thread."""
    names: dict[str, Any] = {}
    items = []
    for i, (key, fixed, process) in enumerate(slots):
        if key is None:
            names[f"v{i}"] = fixed
            items.append(f"v{i}")
        elif process is None:
            items.append(f"p[{key!r}]")
        else:
            names[f"f{i}"] = process
            items.append(f"f{i}(p[{key!r}])")
    source = f"lambda p: ({''.join(item + ', ' for item in items)})"
    return eval(source, names)  # type: ignore[no-any-return]  # noqa: S307  (keys are repr'd)


def is_unique_violation(exc: BaseException) -> bool:
    """Whether a statement failed on a unique key: SQLAlchemy's IntegrityError from `execute`,
    or asyncpg's unique_violation (SQLSTATE 23505) from `execute_on_driver`."""
    if isinstance(exc, sa.exc.IntegrityError):
        return True
    return getattr(exc, "sqlstate", None) == "23505"


# A statement and its parameters, to run with others (`run_all`, `together_on_driver`).
Write = tuple[Prepared, Mapping[str, Any]]


def run_all(conn: Connection, writes: Sequence[Write]) -> list[Result]:
    """Run each in order in the caller's transaction; their results."""
    return [statement.execute(conn, params) for statement, params in writes]


async def together_on_driver(
    conn: AsyncConnection, writes: Sequence[Write], returning: int | None = None
) -> Any:
    """Run `writes` as one PostgreSQL statement on the driver, in autocommit: all of them or,
    if any fails, none (asyncpg's error raised). The first row of `writes[returning]`'s
    RETURNING (None: no row, or `returning` None).

    Each write is a WITH query of the statement, and they all see the database as it was when
    the statement began, in no set order: none may depend on another's effect, and no two may
    change the same row (PostgreSQL would apply only one of them)."""
    plans = [statement._plan(conn.dialect, params) for statement, params in writes]
    key = (tuple(map(id, plans)), returning)
    sql = _together.get(key)
    if sql is None:
        sql = _together[key] = _together_sql(plans, returning)
    arguments = [
        a for plan, (_, params) in zip(plans, writes, strict=True) for a in plan.parameters(params)
    ]
    for observe in observers:
        observe(sql)
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None
    raw = await driver.fetch(sql, *arguments)
    if returning is None or not raw:
        return None
    return plans[returning].rows(raw)[0]


# The SQL of each combination of plans run together (plans live as long as their Prepared).
_together: dict[tuple[tuple[int, ...], int | None], str] = {}


def _together_sql(plans: Sequence[_Plan], returning: int | None) -> str:
    parts, offset = [], 0
    for i, plan in enumerate(plans):
        numbers = {int(n) for n in _PLACEHOLDER.findall(plan.sql)}
        if numbers != set(range(1, len(plan.slots) + 1)):
            raise TypeError(f"not numbered $1..${len(plan.slots)}: {plan.sql}")
        sql = _PLACEHOLDER.sub(functools.partial(_shifted, by=offset), plan.sql)
        parts.append(f"w{i} AS ({sql})")
        offset += len(plan.slots)
    main = "SELECT NULL" if returning is None else f"SELECT * FROM w{returning}"
    return f"WITH {', '.join(parts)} {main}"


def _shifted(number: re.Match[str], by: int) -> str:
    return f"${int(number[1]) + by}"


def _run(conn: Connection, plan: _Plan, parameters: Any) -> Result:
    for observe in observers:
        observe(plan.sql)
    raw = conn.connection.dbapi_connection
    assert raw is not None
    dbapi_error = conn.dialect.loaded_dbapi.Error
    cursor = raw.cursor()
    try:
        cursor.execute(plan.sql, parameters)
        rows = plan.rows(cursor.fetchall()) if cursor.description is not None else []
        return Result(rows, cursor.rowcount)
    except dbapi_error as exc:
        if conn.dialect.is_disconnect(exc, raw, cursor):
            conn.invalidate(exc)
        raise sa.exc.DBAPIError.instance(
            plan.sql, parameters, exc, dbapi_error, dialect=conn.dialect
        ) from exc
    finally:
        cursor.close()
