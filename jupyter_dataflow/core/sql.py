"""Spark SQL as data: parse with positions, canonicalize, find and rename references.

Everything goes through sqlglot with the Spark dialect. Canonical text is what the
fingerprint hashes: comments, whitespace, keyword and identifier case and redundant
parentheses are gone, while anything that changes meaning stays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.optimizer.scope import traverse_scope

from jupyter_dataflow.core.errors import SqlError

DIALECT = "spark"

# Parents under which a parenthesis can never change how an expression binds.
_PAREN_FREE_PARENTS = (exp.Select, exp.Where, exp.Having, exp.Alias, exp.Paren, exp.Group, exp.Ordered)


def parse(sql: str, stage: str | None = None) -> exp.Expression:
    """Parse one Spark SQL query, raising `SqlError` with line, column and text."""
    if not isinstance(sql, str) or not sql.strip():
        raise SqlError("empty SQL", stage=stage)
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except ParseError as err:
        first = err.errors[0] if err.errors else {}
        line = first.get("line")
        col = first.get("col")
        highlight = first.get("highlight") or ""
        if isinstance(col, int) and highlight:
            col = max(col - len(highlight) + 1, 1)
        desc = first.get("description") or str(err)
        if highlight:
            desc = f"{desc} near {highlight!r}"
        raise SqlError(desc, stage=stage, line=line, column=col, text=sql) from None
    except TokenError as err:
        raise SqlError(str(err), stage=stage, text=sql) from None
    if len(statements) != 1:
        raise SqlError(f"expected exactly one SQL statement, found {len(statements)}", stage=stage)
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        raise SqlError(
            f"a transform must be a query (SELECT ...), not {tree.key.upper()}", stage=stage
        )
    return cast(exp.Expression, tree)


def _strip_redundant_parens(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Paren):
        inner = node.this
        atomic = isinstance(inner, (exp.Column, exp.Literal, exp.Identifier, exp.Func, exp.Paren, exp.Null, exp.Boolean))
        if atomic or isinstance(node.parent, _PAREN_FREE_PARENTS) or node.parent is None:
            return inner
    return node


def canonical(sql: str | exp.Expression, stage: str | None = None) -> str:
    """The canonical text of a query: equal for cosmetic edits, different otherwise."""
    tree = parse(sql, stage) if isinstance(sql, str) else sql.copy()
    tree = normalize_identifiers(tree, dialect=DIALECT)
    for _ in range(3):  # nested redundant parentheses peel one layer per pass
        tree = tree.transform(_strip_redundant_parens)
    for node in tree.walk():
        node.comments = None
    return tree.sql(dialect=DIALECT, normalize=True, comments=False)


def referenced_tables(sql: str | exp.Expression, stage: str | None = None) -> list[str]:
    """Names of the tables a query reads, in first-seen order; CTEs and aliases excluded."""
    tree = parse(sql, stage) if isinstance(sql, str) else sql
    seen: dict[str, None] = {}
    for scope in traverse_scope(tree):
        for source in scope.sources.values():
            if isinstance(source, exp.Table) and source.name and not source.args.get("db"):
                seen.setdefault(source.name, None)
    # Table-valued references that traverse_scope cannot see (e.g. inside lateral views).
    for table in tree.find_all(exp.Table):
        if table.name and not table.args.get("db") and _is_physical(table, tree):
            seen.setdefault(table.name, None)
    return list(seen)


def _is_physical(table: exp.Table, tree: exp.Expression) -> bool:
    cte_names = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    return table.name not in cte_names


def rename_tables(sql: str, mapping: Mapping[str, str], stage: str | None = None) -> str:
    """Rewrite references to stage names (case-insensitive) as other table names."""
    lowered = {k.lower(): v for k, v in mapping.items()}
    tree = parse(sql, stage)
    cte_names = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        name = table.name.lower()
        if table.args.get("db") or name in cte_names or name not in lowered:
            continue
        alias = table.alias or table.name
        new = exp.to_table(lowered[name])
        if alias:
            new.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
        table.replace(new)
    return tree.sql(dialect=DIALECT)


def group_also_by(sql: str, table: str, column: str, alias: str) -> str | None:
    """A grouped query also grouped by `table.column`, selected as `alias`.

    For computing a partial aggregate of many partitions at once: grouping by the
    partition key too gives each partition's groups apart. None when the query has no
    GROUP BY (a global aggregate yields one row even for an empty partition, which a
    grouped one cannot) or does not read `table` once in its top-level FROM.
    """
    tree = parse(sql)
    group = tree.args.get("group") if isinstance(tree, exp.Select) else None
    if not isinstance(tree, exp.Select) or group is None or not group.expressions:
        return None
    sources = [tree.args.get("from_") or tree.args.get("from"), *(tree.args.get("joins") or [])]
    tables = [s.this for s in sources if s is not None and isinstance(s.this, exp.Table)]
    matches = [t for t in tables if t.name.lower() == table.lower() and not t.args.get("db")]
    if len(matches) != 1:
        return None
    qualifier = matches[0].alias or matches[0].name
    key = exp.column(column, table=qualifier, quoted=True)
    tree.select(exp.alias_(key.copy(), alias, quoted=True), copy=False)
    group.append("expressions", key)
    return tree.sql(dialect=DIALECT)
