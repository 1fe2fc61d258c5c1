"""The lineage widget in a real JupyterLab, driven with Debian's Chromium.

Reuses the JupyterLab + Chromium fixtures of `tests/browser/test_lab.py`: its home
(orders -> daily -> top_days) is extended here with a PySpark stage, a failing stage
and a sink, run on the shared SparkSession, and one stage is made stale. A notebook
displays `flow.lineage()` and `flow.lineage("daily", columns=True)`; the test checks
the Cytoscape canvas, clicks a node, live-recolours one from the kernel, inserts a
`%%query` cell with the Query button, and saves screenshots under test-artifacts/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import jupyter_dataflow as jd

lab_module = pytest.importorskip("tests.browser.test_lab")
lab = lab_module.lab
browser = lab_module.browser
page = lab_module.page
shot = lab_module.shot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.spark]

# Cytoscape.js keeps its instance on the container element (`_cyreg`); the tests
# read node positions and classes from it, since the graph itself is a canvas.
FIND_GRAPHS = """() => [...document.querySelectorAll('.jp-OutputArea-output div')]
    .filter(d => d._cyreg && d._cyreg.cy)"""


def graph_facts(page: Any, index: int, node: str) -> dict[str, Any]:
    return page.evaluate(
        """([index, node]) => {
            const boxes = [...document.querySelectorAll('.jp-OutputArea-output div')]
                .filter(d => d._cyreg && d._cyreg.cy);
            const box = boxes[index];
            if (!box) { return null; }
            const cy = box._cyreg.cy;
            const el = cy.getElementById(node);
            const r = box.getBoundingClientRect();
            const p = el.nonempty() ? el.renderedPosition() : {x: 0, y: 0};
            return {nodes: cy.nodes().length, edges: cy.edges().length, classes: el.classes(),
                    x: r.left + p.x, y: r.top + p.y, canvases: box.querySelectorAll('canvas').length};
        }""",
        [index, node],
    )


def enriched(daily: Any) -> Any:
    return daily.withColumn("double_revenue", daily.revenue * 2)


def broken(daily: Any) -> Any:
    raise ValueError("this stage fails on purpose")


def extend_and_run(home: Path, root: Path, spark: Any) -> None:
    flow = jd.Flow.open(home=home, spark=spark)
    try:
        flow.transform("enriched", python=enriched)
        flow.transform("broken", python=broken)
        flow.sink("daily_out", source="daily", path=str(root / "out" / "daily"))
        flow.run()
        flow.transform("top_days", "SELECT * FROM daily WHERE revenue > 50")   # now stale
    finally:
        flow.close()


def write_notebook(path: Path) -> None:
    sources = [
        "import jupyter_dataflow as jd\n"
        "flow = jd.Flow.open(home='.dataflow')\n"
        "w = flow.lineage()\n"
        "w",
        "flow.lineage('daily', columns=True)",
        "from jupyter_dataflow.reconciler import events as ev\n"
        "flow.events.emit(ev.Event(ev.TASK_STARTED, flow.name, 'top_days'))\n"
        "print('emitted')",
    ]
    cells = [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
              "source": s} for i, s in enumerate(sources)]
    nb = {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}}
    path.write_text(json.dumps(nb))


def wait(page: Any, expression: str, timeout: float = 60_000) -> None:
    """`page.wait_for_function`, with a screenshot and the page's text when it times out."""
    try:
        page.wait_for_function(expression, timeout=timeout)
    except Exception:
        shot(page, "lineage-timeout")
        text = page.locator(".jp-NotebookPanel-notebook").inner_text()
        raise AssertionError(f"timed out waiting for {expression}\n--- notebook:\n{text[-3000:]}") from None


def run_cell(page: Any, notebook: Any, index: int) -> None:
    notebook.locator(".jp-Cell").nth(index).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Control+Enter")


def test_lineage_widget_renders_and_reacts(page: Any, lab: Any, spark: Any) -> None:
    extend_and_run(lab.home, lab.root, spark)
    write_notebook(lab.root / "lineage.ipynb")
    page.goto(lab.page_url("lab/tree/lineage.ipynb"))
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=120_000)
    notebook = page.locator(".jp-NotebookPanel-notebook")
    notebook.wait_for(timeout=60_000)
    # The kernel is ready when the status bar says so (the execution indicator is
    # already "idle" while the kernel still initializes).
    wait(page, "() => /\\| Idle/.test(document.querySelector('.jp-StatusBar-Widget')?.innerText || '')",
         120_000)

    run_cell(page, notebook, 0)
    wait(page, f"() => ({FIND_GRAPHS})().length >= 1", 120_000)
    wait(page, f"() => ({FIND_GRAPHS})()[0]._cyreg.cy.nodes().length === 6")
    page.wait_for_timeout(1500)   # let the layout settle and the canvas paint
    facts = graph_facts(page, 0, "daily")
    assert facts["nodes"] == 6 and facts["edges"] == 5, facts
    assert facts["canvases"] > 0
    assert "state-fresh" in facts["classes"] and "kind-sql" in facts["classes"]
    assert "state-failed" in graph_facts(page, 0, "broken")["classes"]
    assert "state-stale" in graph_facts(page, 0, "top_days")["classes"]
    assert "kind-python" in graph_facts(page, 0, "enriched")["classes"]

    # A click on the `daily` node fills the detail pane (kernel round trip).
    page.mouse.click(facts["x"], facts["y"])
    output = notebook.locator(".jp-Cell").nth(0).locator(".jp-OutputArea")
    output.get_by_text("first rows of daily").wait_for(timeout=60_000)
    assert "SQL transform" in output.inner_text()
    shot(page, "lineage-widget")

    # Live: an event emitted in the kernel recolours a node in the page.
    run_cell(page, notebook, 2)
    page.wait_for_function(
        f"() => ({FIND_GRAPHS})()[0]._cyreg.cy.getElementById('top_days').hasClass('state-running')",
        timeout=60_000)

    # Columns inside stages, centred on `daily`.
    run_cell(page, notebook, 1)
    wait(page, f"() => ({FIND_GRAPHS})().length >= 2", 120_000)
    page.wait_for_timeout(1500)
    columns = graph_facts(page, 1, "daily.revenue")
    assert columns["nodes"] > 6, columns
    second = notebook.locator(".jp-Cell").nth(1).locator(".jp-OutputArea")
    second.scroll_into_view_if_needed()
    columns = graph_facts(page, 1, "daily.revenue")
    page.mouse.click(columns["x"], columns["y"])
    wait(page, "() => [...document.querySelectorAll('.jp-OutputArea')]"
               ".some(o => o.innerText.includes('daily.revenue comes from'))")
    assert "orders.amount" in second.inner_text()
    page.wait_for_function(
        f"() => ({FIND_GRAPHS})()[1]._cyreg.cy.getElementById('orders.amount').hasClass('highlight')",
        timeout=60_000)
    lab_module.ARTIFACTS.mkdir(exist_ok=True)
    second.screenshot(path=str(lab_module.ARTIFACTS / "lineage-widget-columns.png"))

    # Query inserts a %%query cell through the lab extension's comm target.
    cells_before = notebook.locator(".jp-Cell").count()
    output.get_by_role("button", name="Query").click()
    page.wait_for_function(
        f"() => document.querySelectorAll('.jp-NotebookPanel-notebook .jp-Cell').length === {cells_before + 1}",
        timeout=60_000)
    texts = notebook.locator(".jp-Cell .jp-InputArea-editor").all_inner_texts()
    assert any("%%query" in t and "FROM daily" in t for t in texts), texts
