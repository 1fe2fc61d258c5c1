"""Rich and plain-text views of what `Flow` reports: status, plan, provenance, queries.

Each view is a small value with `_repr_html_` (JupyterLab) and `__repr__` (terminals,
logs, tests), handed to `IPython.display.display`. Views only format data they are
given; they never call `Flow`, Spark or the store.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jupyter_dataflow.execute.boundary import capped, engine_lines
from jupyter_dataflow.flow import Change, StageStatus

STATE_COLOURS = {
    "fresh": "#1a7f37",
    "stale": "#9a6700",
    "running": "#0969da",
    "failed": "#cf222e",
    "never run": "#6e7781",
}

_TABLE_STYLE = "border-collapse:collapse;font-size:12px;text-align:left"
_CELL_STYLE = "padding:2px 8px;border-bottom:1px solid #d0d7de;vertical-align:top;text-align:left"


def _esc(value: object) -> str:
    return html.escape("" if value is None else str(value))


def text_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A fixed-width text table (no colours), for terminals and test output."""
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def html_table(headers: Sequence[str], rows: Iterable[Sequence[str]], caption: str = "") -> str:
    """An HTML table; `rows` hold already-escaped HTML fragments."""
    head = "".join(f'<th style="{_CELL_STYLE}">{_esc(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f'<td style="{_CELL_STYLE}">{c}</td>' for c in row) + "</tr>"
                   for row in rows)
    cap = f'<caption style="text-align:left;font-weight:600">{_esc(caption)}</caption>' if caption else ""
    return f'<table style="{_TABLE_STYLE}">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def state_badge(state: str) -> str:
    colour = STATE_COLOURS.get(state, "#6e7781")
    return f'<span style="color:{colour};font-weight:600">&#9679; {_esc(state)}</span>'


def _count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


@dataclass(frozen=True)
class StatusView:
    """`%dataflow status`: one row per stage with state, partitions, rows, last update."""

    flow: str
    home: str
    stages: Sequence[StageStatus]

    _HEADERS = ("stage", "kind", "mode", "state", "partitions", "rows", "updated", "why")

    def _why(self, s: StageStatus) -> str:
        if s.error:
            return s.error.splitlines()[0]
        if s.state == "stale" and s.reasons:
            more = f" (+{len(s.reasons) - 1} more)" if len(s.reasons) > 1 else ""
            return s.reasons[0] + more
        return ""

    def _rows(self) -> list[tuple[object, ...]]:
        return [(s.name, s.kind, s.mode or "", s.state, s.partitions if s.kind != "sink" else "",
                 _count(s.rows), s.updated or "", self._why(s)) for s in self.stages]

    def __repr__(self) -> str:
        if not self.stages:
            return f"flow {self.flow!r} has no stages yet"
        return f"flow {self.flow!r} in {self.home}\n" + text_table(self._HEADERS, self._rows())

    def _repr_html_(self) -> str:
        if not self.stages:
            return f"<p>flow <b>{_esc(self.flow)}</b> has no stages yet</p>"
        rows = []
        for s, raw in zip(self.stages, self._rows(), strict=True):
            cells = [_esc(v) for v in raw]
            cells[0] = f"<b>{_esc(s.name)}</b>"
            cells[3] = state_badge(s.state)
            why = self._why(s)
            if s.reasons and s.state == "stale":
                cells[7] = f'<span title="{_esc(chr(10).join(s.reasons))}">{_esc(why)}</span>'
            rows.append(cells)
        return html_table(self._HEADERS, rows, f"flow {self.flow} · {self.home}")


@dataclass(frozen=True)
class PlanView:
    """`%dataflow plan`: the tasks a run would execute, with their reasons."""

    plan: Any   # jupyter_dataflow.plan.planner.Plan, reached through Flow.plan()

    _HEADERS = ("stage", "partition", "reason", "cause")

    def _rows(self) -> list[tuple[str, str, str, str]]:
        out = []
        for t in self.plan.tasks:
            partition = t.partition or "(whole)"
            if getattr(t, "role", "output") in ("partial", "rollup"):
                partition += f" ({t.role})"
            out.append((t.stage, partition, t.reason, t.cause))
        return out

    def _summary(self) -> str:
        tasks = self.plan.tasks
        if not tasks:
            return "nothing to do: every stage is fresh"
        stages = sorted({t.stage for t in tasks})
        return f"{len(tasks)} task(s) in {len(stages)} stage(s): {', '.join(stages)}"

    def __repr__(self) -> str:
        if not self.plan.tasks:
            return self._summary()
        return self._summary() + "\n" + text_table(self._HEADERS, self._rows())

    def _repr_html_(self) -> str:
        if not self.plan.tasks:
            return f"<p>{_esc(self._summary())}</p>"
        rows = [[f"<b>{_esc(s)}</b>", _esc(p), state_badge(r) if r in STATE_COLOURS else _esc(r), _esc(c)]
                for s, p, r, c in self._rows()]
        return html_table(self._HEADERS, rows, self._summary())


@dataclass(frozen=True)
class ExplainView:
    """`%dataflow explain`: provenance of the stored partitions of one stage."""

    info: Mapping[str, Any]

    _HEADERS = ("partition", "rows", "fingerprint", "committed", "reason", "seconds", "inputs")

    def _rows(self) -> list[tuple[object, ...]]:
        rows: list[tuple[object, ...]] = []
        for p in self.info.get("partitions", []):
            inputs = ", ".join(f"{i['stage']}/{i['partition']}" if i["partition"] else i["stage"]
                               for i in p.get("inputs", []))
            label = p["partition"] or "(whole)"
            if p.get("role") not in (None, "output"):
                label += f" ({p['role']})"
            rows.append((label, _count(p.get("rows")), str(p["fingerprint"])[:12], p.get("committed") or "",
                         p.get("reason", ""), p.get("seconds", ""), inputs))
        return rows

    def _header(self) -> str:
        i = self.info
        return (f"{i['kind']} {i['stage']} · mode {i['mode']} ({i.get('mode_reason', '')})"
                f" · definition {str(i['definition_hash'])[:12]}")

    def _code(self) -> str:
        code = self.info.get("code")
        return code if isinstance(code, str) else repr(code)

    def __repr__(self) -> str:
        parts = [self._header(), "code:", *("  " + ln for ln in self._code().splitlines())]
        rows = self._rows()
        parts.append(text_table(self._HEADERS, rows) if rows else "no committed partitions yet")
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        rows = [[_esc(v) for v in r] for r in self._rows()]
        table = html_table(self._HEADERS, rows) if rows else "<p>no committed partitions yet</p>"
        return (f"<p><b>{_esc(self._header())}</b></p>"
                f"<pre style='font-size:12px'>{_esc(self._code())}</pre>{table}")


@dataclass(frozen=True)
class QueryView:
    """`%%query`: the first rows of a result, with the engine-side limit made visible."""

    frame: Any          # pandas.DataFrame holding at most `limit` rows
    limit: int
    truncated: bool
    name: str
    notes: Sequence[str] = field(default_factory=tuple)

    def footer(self) -> str:
        n = len(self.frame)
        text = (f"first {n} rows (limit {self.limit}; more rows exist)" if self.truncated
                else f"{n} row{'s' if n != 1 else ''}")
        return f"{text} · stored in {self.name}"

    def __repr__(self) -> str:
        body = self.frame.to_string(index=False) if len(self.frame.columns) else "(no columns)"
        return "\n".join([body, self.footer(), *self.notes])

    def _repr_html_(self) -> str:
        table = self.frame.to_html(index=False, max_rows=self.limit, border=0)
        notes = "".join(f"<br>{_esc(n)}" for n in self.notes)
        return f"{table}<p style='font-size:11px;color:#57606a'>{_esc(self.footer())}{notes}</p>"


def describe_change(kind: str, change: Change) -> str:
    """One line saying what registering a stage did."""
    if change.action == "unchanged":
        return f"{kind} {change.stage}: unchanged (same definition; nothing to recompute)"
    text = f"{kind} {change.stage}: {change.action}"
    if change.stale:
        text += f"; now stale: {', '.join(change.stale)}"
    return text


def short_error(err: BaseException, limit: int = 8) -> str:
    """An engine error trimmed to what a notebook reader needs (no JVM stack)."""
    return "\n".join(capped(engine_lines(str(err) or type(err).__name__), limit))
