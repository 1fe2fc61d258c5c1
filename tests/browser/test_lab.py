"""The Dataflow side panel in a real JupyterLab, driven with Debian's Chromium.

A real `jupyter lab` serves a home created here; Playwright opens the panel, checks
the graph and the stage list, runs a stage (a real CLI subprocess on local Spark),
and checks that the `jupyter_dataflow` comm target inserts a cell below the
requesting one. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import jupyter_dataflow as jd

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
BUILT_EXTENSION = REPO / "jupyter_dataflow" / "labextension"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    home: Path
    log: Path

    def page_url(self, path: str = "lab") -> str:
        return f"{self.url}{path}?token={self.token}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_home(root: Path) -> Path:
    """Flow `default`: source `orders` -> transform `daily` -> transform `top_days`,
    defined but never run (defining stages needs no Spark)."""
    orders = root / "data" / "orders"
    for i, day in enumerate(["2024-01-01", "2024-01-02"]):
        folder = orders / f"date={day}"
        folder.mkdir(parents=True)
        table = pa.table(
            {
                "order_id": pa.array(range(i * 100, i * 100 + 50), type=pa.int64()),
                "amount": pa.array([float(j % 17) for j in range(50)], type=pa.float64()),
            }
        )
        pq.write_table(table, folder / "part-0.parquet")
    home = root / ".dataflow"
    flow = jd.Flow.open(home=home, name="default")
    try:
        flow.source("orders", path=str(orders), format="parquet", partition_by="date")
        flow.transform(
            "daily",
            "SELECT date, count(*) AS orders, sum(amount) AS revenue FROM orders GROUP BY date",
        )
        flow.transform("top_days", "SELECT * FROM daily WHERE revenue > 100")
    finally:
        flow.close()
    return home


def make_notebook(path: Path) -> None:
    """One cell that asks the front end, through the comm target, for a new cell."""
    source = (
        "from comm import create_comm\n"
        "cell_id = get_ipython().kernel.get_parent()['metadata'].get('cellId')\n"
        "c = create_comm(target_name='jupyter_dataflow', data={'action': 'insert_cell', "
        "'code': '# promoted by the kernel\\nprint(41 + 1)', 'cell_id': cell_id})\n"
        "print('asked for', cell_id)"
    )
    cells = [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "asker",
            "metadata": {},
            "outputs": [],
            "source": source,
        },
        {"cell_type": "markdown", "id": "after", "metadata": {}, "source": "The end."},
    ]
    nb = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb))


def make_promote_notebook(path: Path) -> None:
    """The user's path: open the flow, name an ad hoc query, promote it."""
    sources = [
        "%load_ext jupyter_dataflow\n%dataflow open --home .dataflow",
        "%%query big_orders\nSELECT date, order_id, amount FROM orders WHERE amount > 10",
        "%dataflow promote big_orders AS big_orders_t",
        "# last cell",
    ]
    cells = [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": f"c{i}",
            "metadata": {},
            "outputs": [],
            "source": src,
        }
        for i, src in enumerate(sources)
    ]
    nb = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    if not (BUILT_EXTENSION / "package.json").exists():
        pytest.skip("the lab extension is not built (jlpm build:prod)")
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    root.mkdir()
    home = make_home(root)
    make_notebook(root / "promote.ipynb")
    make_promote_notebook(root / "magics.ipynb")

    # Serve this checkout's build of the extension, whatever copy is installed.
    extensions = base / "labextensions"
    extensions.mkdir()
    (extensions / "jupyter-dataflow").symlink_to(BUILT_EXTENSION, target_is_directory=True)
    config = base / "config"
    config.mkdir()
    (config / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"jupyter_dataflow.server": True}}})
    )
    # No news prompt over the screenshots.
    notification = base / "settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    port = free_port()
    token = secrets.token_hex(16)
    log = base / "lab.log"
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "PYSPARK_PYTHON": sys.executable,
    }
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.extra_labextensions_path={extensions}",
        f"--LabApp.user_settings_dir={base / 'settings'}",
        f"--LabApp.workspaces_dir={base / 'workspaces'}",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}api/status?token={token}", timeout=5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("jupyter lab did not start:\n" + log.read_text()) from None
                time.sleep(0.5)
        yield Lab(url=url, token=token, root=root, home=home, log=log)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, lab: Lab) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    try:
        yield page
    finally:
        context.close()
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "console.log").open("a").write("\n".join(console) + "\n")
    dataflow_errors = [e for e in errors if "dataflow" in e.lower()]
    assert not dataflow_errors, dataflow_errors


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def open_panel(page: Any, lab: Lab) -> Any:
    page.goto(lab.page_url())
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=120_000)
    tab = page.locator('.jp-SideBar .lm-TabBar-tab[data-id="jupyter-dataflow-panel"]')
    tab.wait_for(timeout=60_000)
    panel = page.locator("#jupyter-dataflow-panel")
    # The restored layout may still be settling: a tab marked current can belong to a
    # collapsed sidebar, and clicking a shown panel's tab collapses it. So click only
    # while the panel is hidden, and look again after each click.
    for _ in range(10):
        if panel.is_visible():
            break
        tab.click()
        with contextlib.suppress(Exception):
            panel.wait_for(state="visible", timeout=3_000)
    panel.wait_for(state="visible", timeout=5_000)
    widen_left_area(page)
    return panel


def widen_left_area(page: Any, by: int = 230) -> None:
    """Drag the left sidebar's split handle, as a user would for a wider graph."""
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    if box is None:
        return
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + by, y, steps=5)
    page.mouse.up()


def dismiss_news(page: Any) -> None:
    """Answer JupyterLab's news prompt so it does not cover the screenshots."""
    no = page.locator(".jp-toast-button", has_text="No")
    if no.count():
        no.first.click()


def start_session(lab: Lab, path: str) -> None:
    """Start the notebook's kernel session on the server before the page opens it, so
    the page attaches to a ready kernel instead of racing to start one."""
    body = {"path": path, "name": path, "type": "notebook", "kernel": {"name": "python3"}}
    request = urllib.request.Request(
        f"{lab.url}api/sessions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"token {lab.token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=120) as reply:
        assert reply.status in (200, 201)


def accept_kernel_dialog(page: Any) -> None:
    """If JupyterLab still asks which kernel to use, take the one it proposes."""
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    if dialog.count():
        dialog.locator(".jp-mod-accept").click()


def run_cell(page: Any, index: int, timeout: float = 300) -> None:
    """Run cell `index` with the toolbar's run button and wait for its execution count.

    JupyterLab shows `[*]` as soon as it sends a cell to the kernel; a cell still at
    `[ ]` was never sent (the session was not ready for the frontend yet), so only
    then is the click repeated.
    """
    cell = page.locator(".jp-NotebookPanel-notebook .jp-Cell").nth(index)
    prompt = cell.locator(".jp-InputPrompt")
    button = page.locator(
        '.jp-NotebookPanel-toolbar [data-command="notebook:run-cell-and-select-next"]'
    )
    deadline = time.monotonic() + timeout
    for _ in range(5):
        accept_kernel_dialog(page)
        prompt.click()
        button.click()
        sent = time.monotonic() + 20
        while time.monotonic() < sent and prompt.inner_text().strip() in ("[ ]:", ""):
            accept_kernel_dialog(page)
            page.wait_for_timeout(250)
        if prompt.inner_text().strip() not in ("[ ]:", ""):
            break
    while "*" in prompt.inner_text():
        assert time.monotonic() < deadline, f"cell {index} still running"
        page.wait_for_timeout(250)
    assert re.search(r"\[\d+\]", prompt.inner_text()), prompt.inner_text()


def stage_row(panel: Any, stage: str) -> Any:
    return panel.locator(f'.jp-Dataflow-stages tr[data-stage="{stage}"]')


def test_panel_shows_the_graph_and_runs_a_stage(page: Any, lab: Lab) -> None:
    panel = open_panel(page, lab)
    graph = panel.locator(".jp-Dataflow-graph")
    page.wait_for_function(
        "() => document.querySelector('.jp-Dataflow-graph')?.dataset.nodes === '3'",
        timeout=60_000,
    )
    assert graph.get_attribute("data-edges") == "2"
    assert graph.locator("canvas").count() > 0
    for stage in ("orders", "daily", "top_days"):
        assert stage_row(panel, stage).get_attribute("data-state") == "never run"
    assert panel.locator(".jp-Dataflow-flowPicker").input_value() == "default"
    shot(page, "dataflow-panel-never-run")

    # Select `daily`: details show its state; then run it (and what it needs).
    stage_row(panel, "daily").click()
    details = panel.locator(".jp-Dataflow-details")
    details.locator(".jp-Dataflow-title", has_text="daily").wait_for(timeout=30_000)
    details.locator(".jp-Dataflow-summary").first.wait_for(timeout=30_000)
    panel.locator(".jp-Dataflow-button-run-stage").click()

    run = panel.locator(".jp-Dataflow-run")
    run.wait_for(timeout=30_000)
    page.wait_for_function(
        """() => ['running', 'fresh'].includes(
              document.querySelector('.jp-Dataflow-stages tr[data-stage="daily"]')?.dataset.state)""",
        timeout=60_000,
    )
    shot(page, "dataflow-panel-running")
    page.wait_for_function(
        """() => document.querySelector('.jp-Dataflow-run')?.dataset.state !== 'running'""",
        timeout=300_000,
    )
    assert run.get_attribute("data-state") == "succeeded", panel.inner_text()
    page.wait_for_function(
        """() => document.querySelector('.jp-Dataflow-stages tr[data-stage="daily"]')
              ?.dataset.state === 'fresh'""",
        timeout=60_000,
    )
    assert stage_row(panel, "orders").get_attribute("data-state") == "fresh"
    # Only what `daily` needs ran; its downstream did not.
    assert stage_row(panel, "top_days").get_attribute("data-state") == "never run"

    # The selected stage now has committed partitions and a records preview.
    preview = details.locator("table.jp-Dataflow-preview")
    preview.wait_for(timeout=60_000)
    assert preview.locator("tbody tr").count() == 2
    assert "revenue" in preview.locator("thead").inner_text()
    assert "date=2024-01-0" in details.inner_text()
    dismiss_news(page)
    shot(page, "dataflow-panel-fresh")


def test_palette_has_the_dataflow_commands(page: Any, lab: Lab) -> None:
    open_panel(page, lab)
    page.keyboard.press("Control+Shift+C")
    palette = page.locator(".lm-CommandPalette")
    palette.wait_for(state="visible", timeout=30_000)
    page.keyboard.type("Dataflow:")
    palette.locator(".lm-CommandPalette-item", has_text="Export flow").wait_for(timeout=30_000)
    labels = palette.locator(".lm-CommandPalette-itemLabel").all_inner_texts()
    for label in ("Dataflow: Run flow", "Dataflow: Run stage", "Dataflow: Export flow"):
        assert label in labels, labels
    shot(page, "dataflow-palette")


def test_kernel_comm_inserts_a_cell_below_the_requesting_cell(page: Any, lab: Lab) -> None:
    # A fresh workspace and a session started beforehand: nothing races the page
    # for the notebook's kernel.
    start_session(lab, "promote.ipynb")
    page.goto(f"{lab.url}lab/workspaces/promote/tree/promote.ipynb?reset&token={lab.token}")
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=120_000)
    notebook = page.locator(".jp-NotebookPanel-notebook")
    notebook.wait_for(timeout=60_000)
    page.wait_for_function(
        "() => document.querySelectorAll('.jp-NotebookPanel-notebook .jp-Cell').length === 2",
        timeout=60_000,
    )
    cells = notebook.locator(".jp-Cell")
    try:
        # The kernel is up once the toolbar's execution indicator says idle.
        page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for(
            timeout=180_000
        )
        run_cell(page, 0)
        cells.nth(0).locator(".jp-OutputArea", has_text="asked for").wait_for(timeout=60_000)
        page.wait_for_function(
            "() => document.querySelectorAll('.jp-NotebookPanel-notebook .jp-Cell').length === 3",
            timeout=60_000,
        )
    except Exception:
        shot(page, "dataflow-comm-failed")
        raise
    inserted = cells.nth(1)
    assert "jp-CodeCell" in (inserted.get_attribute("class") or "")
    assert "print(41 + 1)" in inserted.locator(".jp-InputArea-editor").inner_text()
    assert "The end." in cells.nth(2).inner_text()
    dismiss_news(page)
    shot(page, "dataflow-comm-inserted-cell")


def api(lab: Lab, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"{lab.url}dataflow/api/{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {lab.token}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=60) as reply:
        return json.loads(reply.read())


def test_promote_magic_inserts_the_transform_cell_and_the_panel_shows_it(
    page: Any, lab: Lab
) -> None:
    # The query reads committed `orders`: make sure they are there.
    states = {n["id"]: n["state"] for n in api(lab, "flows/default/graph")["nodes"]}
    if states["orders"] != "fresh":
        run = api(lab, "flows/default/run", {"stage": "orders"})["run"]
        for _ in range(600):
            if api(lab, f"flows/default/runs/{run}")["state"] != "running":
                break
            time.sleep(0.5)

    start_session(lab, "magics.ipynb")
    page.goto(f"{lab.url}lab/workspaces/magics/tree/magics.ipynb?reset&token={lab.token}")
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=120_000)
    notebook = page.locator(".jp-NotebookPanel-notebook")
    cells = notebook.locator(".jp-Cell")
    page.wait_for_function(
        "() => document.querySelectorAll('.jp-NotebookPanel-notebook .jp-Cell').length === 4",
        timeout=60_000,
    )
    page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for(timeout=180_000)
    try:
        for index in range(3):
            run_cell(page, index)
            output = cells.nth(index).locator(".jp-OutputArea").inner_text()
            assert "Error" not in output, output
        page.wait_for_function(
            "() => document.querySelectorAll('.jp-NotebookPanel-notebook .jp-Cell').length === 5",
            timeout=60_000,
        )
    except Exception:
        shot(page, "dataflow-promote-failed")
        raise
    inserted = cells.nth(3)
    code = inserted.locator(".jp-InputArea-editor").inner_text()
    assert "%%transform big_orders_t" in code
    assert "amount > 10" in code
    assert "# last cell" in cells.nth(4).inner_text()

    # The panel polls the server: the promoted stage appears in the graph.
    panel = open_panel(page, lab)
    stage_row(panel, "big_orders_t").wait_for(timeout=60_000)
    dismiss_news(page)
    shot(page, "dataflow-promoted")
