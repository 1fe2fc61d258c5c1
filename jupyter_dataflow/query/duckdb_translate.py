"""Spark SQL -> checked DuckDB SQL, with the output column names and types Spark would give.

`transpile` (public) and `translate` (memoized, for the engine) parse the query, point
stage names at DuckDB relations, read Spark's output names from the tree as written,
refuse alias references that the two engines resolve differently, and run the checker
with every handler registered. Whatever is not supported becomes a `DuckdbRefusal`. This
module must not read stage files or run DuckDB.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from sqlglot import exp, tokenize
from sqlglot.errors import ErrorLevel, SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.tokens import TokenType

from jupyter_dataflow.core.errors import SqlError
from jupyter_dataflow.core.sql import parse
from jupyter_dataflow.query import duckdb_functions, duckdb_operators
from jupyter_dataflow.query.duckdb_checker import Checker, int_literal
from jupyter_dataflow.query.duckdb_types import (
    NAIVE_UTC,
    OTHER,
    DuckdbRefusal,
    Refuse,
    SparkType,
    arrow_type,
    spark_type,
)

__all__ = ["transpile"]

# The checker dispatches through the handlers these modules register when imported.
_HANDLER_MODULES = (duckdb_operators, duckdb_functions)


# ------------------------------------------------------------- names and entry points


def _auto_name(node: exp.Expression) -> str | None:
    """Spark's name for an unaliased projection, for the few forms whose spelling is sure."""
    if isinstance(node, exp.Column) and isinstance(node.this, exp.Identifier):
        return str(node.name)
    names: dict[type, str] = {exp.Count: "count", exp.Sum: "sum", exp.Avg: "avg", exp.Min: "min", exp.Max: "max"}
    fn = names.get(type(node))
    if fn is None:
        return None
    arg = node.this
    if isinstance(node, exp.Count) and (isinstance(arg, exp.Star) or int_literal(arg) == 1):
        return "count(1)"
    prefix = ""
    if isinstance(arg, exp.Distinct) and len(arg.expressions) == 1:
        arg, prefix = arg.expressions[0], "DISTINCT "
    if isinstance(arg, exp.Column) and not arg.table and isinstance(arg.this, exp.Identifier) and not arg.this.quoted:
        return f"{fn}({prefix}{arg.name})"
    return None


def _names(q: exp.Expression, ctes: Mapping[str, list[str | None]], schemas: Mapping[str, Sequence[str]]) -> list[str | None]:
    """Spark's output column names of a query, read from the tree as written."""
    if isinstance(q, exp.Subquery):
        return _names(q.this, ctes, schemas)
    ctes = dict(ctes)
    with_ = q.args.get("with_")
    for cte in with_.expressions if with_ is not None else []:
        ctes[cte.alias_or_name.lower()] = _names(cte.this, ctes, schemas)
    if isinstance(q, exp.SetOperation):
        return _names(q.this, ctes, schemas)
    if not isinstance(q, exp.Select):
        raise Refuse(f"{q.key.upper()} is not a checked query form")
    sources = _source_names(q, ctes, schemas)
    if any(j.args.get("using") for j in q.args.get("joins") or []) and any(
            isinstance(p, exp.Star) for p in q.expressions):
        raise Refuse("SELECT * with JOIN ... USING is not checked")
    out: list[str | None] = []
    for p in q.expressions:
        if isinstance(p, exp.Star):
            out.extend(n for _, cols in sources for n in cols)
        elif isinstance(p, exp.Column) and isinstance(p.this, exp.Star):
            out.extend(n for alias, cols in sources if alias == p.table.lower() for n in cols)
        elif isinstance(p, exp.Alias):
            out.append(p.alias)
        else:
            out.append(_auto_name(p))
    return out


def _source_names(q: exp.Select, ctes: Mapping[str, list[str | None]],
                  schemas: Mapping[str, Sequence[str]]) -> list[tuple[str, list[str | None]]]:
    sources: list[tuple[str, list[str | None]]] = []
    from_ = q.args.get("from_")
    for src in ([from_.this] if from_ is not None else []) + [j.this for j in q.args.get("joins") or []]:
        if isinstance(src, exp.Table):
            cols = ctes.get(src.name.lower())
            cols = cols if cols is not None else list(schemas.get(src.name.lower(), []))
        elif isinstance(src, exp.Subquery):
            cols = _names(src.this, ctes, schemas)
        else:
            raise Refuse(f"{src.key.upper()} in FROM is not checked")
        sources.append((src.alias_or_name.lower(), cols))
    return sources


def _check_alias_uses(tree: exp.Expression, schemas: Mapping[str, Sequence[str]]) -> None:
    """Refuse alias references whose resolution differs: Spark has no aliases in WHERE/ON, and
    prefers a source column over a same-named alias in GROUP BY/HAVING."""
    ctes: dict[str, list[str | None]] = {}
    for cte in tree.find_all(exp.CTE):
        ctes.setdefault(cte.alias_or_name.lower(), _names(cte.this, ctes, schemas))
    for q in tree.find_all(exp.Select):
        aliases = {p.alias.lower(): p for p in q.expressions if isinstance(p, exp.Alias)}
        if aliases:
            sources = _source_names(q, ctes, schemas)
            _check_alias_use(q, aliases, {str(n).lower() for _, cols in sources for n in cols if n})


def _check_alias_use(q: exp.Select, aliases: Mapping[str, exp.Alias], source_columns: set[str]) -> None:
    clauses = [q.args.get("where"), q.args.get("group"), q.args.get("having")]
    clauses += [j.args.get("on") for j in q.args.get("joins") or []]
    for clause in clauses:
        if clause is None:
            continue
        for col in clause.find_all(exp.Column):
            if col.table or col.find_ancestor(exp.Select) is not q:
                continue
            name = col.name.lower()
            if name not in aliases:
                continue
            aliased = aliases[name].this
            same = isinstance(aliased, exp.Column) and aliased.name.lower() == name
            in_where = clause is q.args.get("where") or isinstance(clause.parent, exp.Join)
            if (in_where and name not in source_columns) or (name in source_columns and not same):
                raise Refuse(f"the name {col.name!r} could mean a select alias or a column")


def _apply_limit(q: exp.Expression, limit: int) -> None:
    current = q.args.get("limit")
    value = int_literal(current.expression) if current is not None else None
    if value is None or value > limit:
        q.set("limit", exp.Limit(expression=exp.Literal.number(limit)))


@dataclass(frozen=True)
class _Translation:
    sql: str
    names: tuple[str, ...]
    types: tuple[SparkType, ...]


def translate(sql: str, relations: Mapping[str, str], schemas: Mapping[str, Sequence[tuple[str, SparkType]]],
               limit: int | None = None, naive_utc: bool = False) -> _Translation:
    """Spark SQL -> checked DuckDB SQL, with Spark's output names and types (memoized)."""
    return _translate_cached(sql, tuple(sorted(relations.items())),
                             tuple(sorted((k, tuple(v)) for k, v in schemas.items())), limit, naive_utc)


@lru_cache(maxsize=512)
def _translate_cached(sql: str, relations: tuple[tuple[str, str], ...],
                      schemas: tuple[tuple[str, tuple[tuple[str, SparkType], ...]], ...],
                      limit: int | None, naive_utc: bool) -> _Translation:
    token = NAIVE_UTC.set(naive_utc)
    try:
        return _translate_tree(sql, dict(relations), dict(schemas), limit)
    finally:
        NAIVE_UTC.reset(token)


def _translate_tree(sql: str, relations: Mapping[str, str], schemas: Mapping[str, Sequence[tuple[str, SparkType]]],
                    limit: int | None) -> _Translation:
    try:
        tree = parse(sql)
        tokens = tokenize(sql, read="spark")
    except (SqlError, SqlglotError) as err:
        raise Refuse(f"Spark SQL does not parse: {err}") from None
    for a, b in itertools.pairwise(tokens):
        # Spark reads 'it''s' as one literal with a quote; the parser here sees two literals
        if a.token_type == b.token_type == TokenType.STRING and b.start == a.end + 1:
            raise Refuse("a doubled quote inside a string literal is not checked")
    lowered = {k.lower(): v.lower() for k, v in relations.items()}
    rel_schemas = {lowered[k.lower()]: list(v) for k, v in schemas.items() if k.lower() in lowered}
    cte_names = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for table in list(tree.find_all(exp.Table)):
        name = table.name.lower()
        if table.args.get("db") or table.args.get("catalog"):
            raise Refuse(f"qualified table name {table.sql(dialect='spark')}")
        if name in cte_names:
            continue
        if name not in lowered:
            raise Refuse(f"table {table.name!r} is not a committed stage")
        table.set("alias", exp.TableAlias(this=exp.to_identifier(table.alias or table.name)))
        table.set("this", exp.to_identifier(lowered[name]))
    column_names = {rel: [n for n, _ in cols] for rel, cols in rel_schemas.items()}
    names = _names(tree, {}, column_names)
    _check_alias_uses(tree, column_names)
    for i, n in enumerate(names):
        if n is None:
            raise Refuse(f"output column {i + 1} needs an alias (AS name): Spark's automatic name is not checked")
    try:
        qualify(tree, schema={rel: {n: "INT" for n, _ in cols} for rel, cols in rel_schemas.items()},
                dialect="spark", validate_qualify_columns=True, identify=True)
    except SqlglotError as err:
        raise Refuse(f"names do not resolve: {str(err).splitlines()[0]}") from None
    checker = Checker({rel: {n.lower(): t for n, t in cols} for rel, cols in rel_schemas.items()})
    out = checker.query(tree, {}, "query")
    if len(out) != len(names):
        raise Refuse("internal: output columns disagree")
    for (qualified_name, t), spark_name in zip(out, names, strict=True):
        if not re.fullmatch(r"_col_\d+", qualified_name) and qualified_name.lower() != str(spark_name).lower():
            raise Refuse(f"internal: output column {spark_name!r} resolved as {qualified_name!r}")
        if t == OTHER or arrow_type(t, "UTC") is None:
            raise Refuse(f"output column {spark_name!r} has a type ({t}) whose conversion is not checked")
    if limit is not None:
        _apply_limit(tree, limit)
    try:
        text = tree.sql(dialect="duckdb", unsupported_level=ErrorLevel.RAISE)
    except SqlglotError as err:
        raise Refuse(f"DuckDB SQL cannot express it: {err}") from None
    return _Translation(text, tuple(str(n) for n in names), tuple(t for _, t in out))


def transpile(sql: str, tables: Mapping[str, str], *,
              schemas: Mapping[str, Mapping[str, str]] | None = None) -> str | DuckdbRefusal:
    """Spark SQL -> DuckDB SQL; `tables` maps stage name -> DuckDB relation name to reference.

    Args:
        sql: one Spark SQL query over stage names.
        tables: stage name -> name of the DuckDB relation that holds its rows.
        schemas: stage name -> {column: Spark type, e.g. 'int', 'decimal(10,2)', 'timestamp'}
            in column order. Without the types nothing can be checked, so the query is refused.

    Returns:
        DuckDB SQL computing what Spark would, or a `DuckdbRefusal` saying why not.
    """
    if schemas is None:
        return DuckdbRefusal("column types of the stages are unknown (pass schemas=...)")
    typed = {stage: [(col, spark_type(t)) for col, t in cols.items()] for stage, cols in schemas.items()}
    try:
        return translate(sql, tables, typed).sql
    except Refuse as refusal:
        return DuckdbRefusal(refusal.reason)
