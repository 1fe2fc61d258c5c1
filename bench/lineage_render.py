"""Lineage of a 500-stage flow: payload build time and time to first render in a browser.

Registers a synthetic flow (20 sources, 480 SQL transforms that filter, project and
join earlier stages) in a temporary home; nothing runs, so no Spark is needed. Then:

1. in this process, times `Flow.status()`, `Flow.graph_payload()` without and with
   column lineage, and building the widget (median of --repeat);
2. in a real JupyterLab on loopback with headless Chromium (/usr/bin/chromium), times
   from pressing Ctrl+Enter on a cell that displays `flow.lineage()` to the Cytoscape
   canvas holding every node, and to the layout settling (positions unchanged for
   0.5 s). The kernel-side build time is printed by the cell and reported apart.

    python bench/lineage_render.py [--stages 500] [--repeat 3] [--no-browser] [--columns]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]
SOURCES = 20


def build_flow(home: Path, stages: int, seed: int = 7) -> None:
    """Sources src0..src19 (empty folders) and transforms t20.. reading earlier stages."""
    import jupyter_dataflow as jd

    rng = random.Random(seed)
    with jd.Flow.open(home=home) as flow:
        for i in range(SOURCES):
            folder = home.parent / "data" / f"src{i}"
            folder.mkdir(parents=True, exist_ok=True)
            flow.source(f"src{i}", path=str(folder))
        names = [f"src{i}" for i in range(SOURCES)]
        for i in range(SOURCES, stages):
            a = rng.choice(names)
            if a.startswith("src") or rng.random() < 0.5:
                sql = f"SELECT k, v * 2 AS v FROM {a} WHERE v > {i % 7}"
            else:
                b = rng.choice([n for n in names if not n.startswith("src") and n != a] or [a])
                sql = (f"SELECT x.k, x.v + y.v AS v FROM {a} x JOIN {b} y ON x.k = y.k "
                       f"WHERE y.v > {i % 5}")
            flow.transform(f"t{i}", sql)
            names.append(f"t{i}")


def median_seconds(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def jupyterlab(root: Path, base: Path) -> Iterator[str]:
    """A JupyterLab serving `root` on loopback; yields its URL with the token."""
    base.mkdir(parents=True, exist_ok=True)
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(base / "runtime"), "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}", f"--LabApp.user_settings_dir={base / 'settings'}",
            f"--LabApp.workspaces_dir={base / 'workspaces'}"]
    log = (base / "lab.log").open("wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}api/status?token={token}", timeout=5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("jupyter lab did not start; see " + str(base / "lab.log")) from None
                time.sleep(0.5)
        yield f"{url}lab/tree/bench.ipynb?token={token}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def write_notebook(path: Path, columns: bool) -> None:
    source = ("import time\nimport jupyter_dataflow as jd\n"
              "flow = jd.Flow.open(home='.dataflow')\n"
              "started = time.perf_counter()\n"
              f"w = flow.lineage(columns={columns})\n"
              "print(f'kernel build {time.perf_counter() - started:.3f} s')\n"
              "w")
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "bench", "metadata": {},
                     "outputs": [], "source": source}],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))


CY = """() => { const b = [...document.querySelectorAll('.jp-OutputArea-output div')]
    .find(d => d._cyreg && d._cyreg.cy); return b ? b._cyreg.cy : null; }"""


def browser_render(root: Path, base: Path, nodes: int, edges: int, columns: bool) -> dict[str, float]:
    """Seconds from Ctrl+Enter to all nodes on the canvas, and to a settled layout."""
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    write_notebook(root / "bench.ipynb", columns)
    with jupyterlab(root, base) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=120_000)
            page.wait_for_function("() => /\\| Idle/.test(document.querySelector('.jp-StatusBar-Widget')"
                                   "?.innerText || '')", timeout=120_000)
            page.locator(".jp-Cell").nth(0).locator(".jp-InputArea-editor").click()
            started = time.perf_counter()
            page.keyboard.press("Control+Enter")
            page.wait_for_function(f"() => {{ const cy = ({CY})(); return cy && cy.nodes().length === {nodes}"
                                   f" && cy.edges().length === {edges}; }}", timeout=600_000, polling=50)
            all_nodes = time.perf_counter() - started
            box = None
            while True:
                current = page.evaluate(f"() => JSON.stringify(({CY})().elements().boundingBox())")
                if current == box:
                    break
                box = current
                page.wait_for_timeout(500)
            settled = time.perf_counter() - started - 0.5
            text = page.locator(".jp-OutputArea").first.inner_text()
            kernel = float(text.split("kernel build ")[1].split(" s")[0]) if "kernel build" in text else float("nan")
            page.screenshot(path=str(ROOT / "test-artifacts" / f"bench-lineage-{'columns' if columns else 'stages'}.png"))
        finally:
            browser.close()
    return {"all nodes drawn": all_nodes, "layout settled": settled, "kernel build": kernel}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-browser", action="store_true", help="skip the JupyterLab + Chromium part")
    ap.add_argument("--columns", action="store_true", help="also render the column view in the browser")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import jupyter_dataflow as jd
    from jupyter_dataflow.widgets.lineage import LineageWidget

    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-lineage-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        started = time.perf_counter()
        build_flow(root / ".dataflow", args.stages)
        print(f"registered {args.stages} stages in {time.perf_counter() - started:.1f} s (no Spark)")
        with jd.Flow.open(home=root / ".dataflow") as flow:
            status_s, _ = median_seconds(flow.status, args.repeat)
            plain_s, plain = median_seconds(flow.graph_payload, args.repeat)
            cold_s, cols = median_seconds(lambda: flow.graph_payload(columns=True), 1)   # empty cache
            cols_s, cols = median_seconds(lambda: flow.graph_payload(columns=True), args.repeat)
            widget_s, widget = median_seconds(lambda: LineageWidget(flow), args.repeat)
            cwidget_s, cwidget = median_seconds(lambda: LineageWidget(flow, columns=True), args.repeat)
            nodes, edges = widget.renderer.counts()
            cnodes, cedges = cwidget.renderer.counts()
            widget.close()
            cwidget.close()
        print(f"\nin process (median of {args.repeat}):")
        print(f"  Flow.status()                       {status_s:8.3f} s")
        print(f"  graph_payload()                     {plain_s:8.3f} s  ({len(json.dumps(plain)) / 1e3:.0f} kB, "
              f"{len(plain['nodes'])} nodes, {len(plain['edges'])} edges)")
        print(f"  graph_payload(columns=True), first  {cold_s:8.3f} s  ({len(json.dumps(cols)) / 1e3:.0f} kB, "
              f"{len(cols['column_edges'])} column edges)")
        print(f"    column tracing alone, first       {cold_s - plain_s:8.3f} s  "
              f"({(cold_s - plain_s) / max(args.stages - SOURCES, 1) * 1e3:.2f} ms per SQL stage)")
        print(f"  graph_payload(columns=True), again  {cols_s:8.3f} s  (column analyses cached)")
        print(f"  ratio columns first / plain         {cold_s / plain_s:8.2f}")
        print(f"  LineageWidget(flow)                 {widget_s:8.3f} s  ({nodes} nodes, {edges} edges)")
        print(f"  LineageWidget(flow, columns=True)   {cwidget_s:8.3f} s  ({cnodes} nodes, {cedges} edges)")
        if args.no_browser:
            return
        if not CHROMIUM.exists():
            print(f"\nbrowser part skipped: {CHROMIUM} is missing")
            return
        runs = [(False, nodes, edges)] + ([(True, cnodes, cedges)] if args.columns else [])
        for columns, n, e in runs:
            figures = browser_render(root, Path(tmp) / f"lab-{columns}", n, e, columns)
            label = "columns" if columns else "stages"
            print(f"\nJupyterLab + headless Chromium, {label} view ({n} nodes, {e} edges):")
            for name, value in figures.items():
                print(f"  {name:<34}  {value:8.3f} s")
            print(f"  ratio settled / all nodes drawn     {figures['layout settled'] / figures['all nodes drawn']:8.2f}")


if __name__ == "__main__":
    main()
