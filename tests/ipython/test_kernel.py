"""The "Python 3 (Dataflow)" kernel: installed, loads the magics at start, and asks the
frontend to insert the promoted cell below the requesting one through the comm."""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

SETUP = "jupyter kernelspec install kernel --name dataflow --sys-prefix"


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Any]:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from jupyter_client.manager import start_new_kernel

    try:
        spec = KernelSpecManager().get_kernel_spec("dataflow")
    except NoSuchKernel:
        pytest.fail(f"the dataflow kernel spec is not installed; run: {SETUP}")
    assert spec.display_name == "Python 3 (Dataflow)"
    assert "--ext=jupyter_dataflow" in spec.argv
    km, kc = start_new_kernel(kernel_name="dataflow", cwd=str(tmp_path))
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _execute(kc: Any, code: str, metadata: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[Any]]:
    """Run code with optional request metadata; return the reply and the iopub messages."""
    msg = kc.session.msg("execute_request", {"code": code, "silent": False, "store_history": True,
                                             "user_expressions": {}, "allow_stdin": False,
                                             "stop_on_error": True}, metadata=metadata or {})
    kc.shell_channel.send(msg)
    reply = kc.get_shell_msg(timeout=120)
    while reply["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
        reply = kc.get_shell_msg(timeout=120)
    seen = []
    while True:
        try:
            io = kc.get_iopub_msg(timeout=30)
        except queue.Empty:
            break
        seen.append(io)
        if (io["msg_type"] == "status" and io["content"]["execution_state"] == "idle"
                and io["parent_header"].get("msg_id") == msg["header"]["msg_id"]):
            break
    return reply["content"], seen


def _stdout(messages: list[Any]) -> str:
    return "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")


def test_kernel_loads_the_magics_and_inserts_promoted_cells(kernel: Any, tmp_path: Path) -> None:
    reply, out = _execute(kernel, "ip = get_ipython()\n"
                                  "print(all(ip.find_cell_magic(m) for m in ('source', 'transform', 'sink', 'query')),"
                                  " ip.find_line_magic('dataflow') is not None)")
    assert reply["status"] == "ok" and _stdout(out).strip() == "True True"

    (tmp_path / "data").mkdir()
    reply, out = _execute(kernel, "%%source orders --format csv --path data --option header=true\n")
    assert reply["status"] == "ok", out
    assert "source orders: added" in _stdout(out)
    _execute(kernel, "ip.magics_manager.registry['DataflowMagics'].queries['q'] = 'SELECT * FROM orders'")

    reply, out = _execute(kernel, "%dataflow promote q AS everything", metadata={"cellId": "cell-7"})
    assert reply["status"] == "ok", out
    opens = [m["content"] for m in out if m["msg_type"] == "comm_open"]
    inserts = [c for c in opens if c["target_name"] == "jupyter_dataflow" and c["data"].get("action") == "insert_cell"]
    assert inserts, json.dumps([m["msg_type"] for m in out])
    assert inserts[0]["data"] == {"action": "insert_cell", "cell_id": "cell-7",
                                  "code": "%%transform everything\nSELECT * FROM orders\n"}

    reply, out = _execute(kernel, "%%transform everything\nSELECT * FROM nothing")
    assert reply["status"] == "error" and reply["ename"] == "UsageError"
    text = "".join(m["content"].get("text", "") for m in out if m["msg_type"] == "stream")
    assert "unknown stage 'nothing'" in text and "Traceback" not in text


def test_watch_output_stays_in_the_cell_that_turned_it_on(kernel: Any, tmp_path: Path) -> None:
    day = tmp_path / "data" / "orders" / "date=2024-01-01"
    day.mkdir(parents=True)
    (day / "a.csv").write_text("order_id,amount\n1,2.5\n")
    for cell in ("%dataflow open --home .dataflow --spark local[1] --conf spark.sql.shuffle.partitions=1",
                 "%config Dataflow.watch_interval = 0.5",
                 "%%source orders --format csv --path data/orders --partition-by date --option header=true\n",
                 "%%transform noisy --lang python\ndef noisy(orders):\n"
                 "    print('printed by the watch')\n    return orders\n"):
        reply, out = _execute(kernel, cell)
        assert reply["status"] == "ok", out
    on_id = kernel.execute("%dataflow watch on")
    reply, seen = _execute(kernel, "import time\nfrom jupyter_dataflow.ipython import current_flow\n"
                                   "f = current_flow()\nfor _ in range(1200):\n"
                                   "    if all(s.state == 'fresh' for s in f.status()):\n        break\n"
                                   "    time.sleep(0.25)\nprint('waited', [s.state for s in f.status()])")
    assert reply["status"] == "ok"
    waited = [m for m in seen if m["msg_type"] == "stream" and "waited" in m["content"]["text"]]
    assert waited and "'fresh', 'fresh'" in waited[0]["content"]["text"], _stdout(seen)
    printed = [m for m in seen if m["msg_type"] == "stream" and "printed by the watch" in m["content"]["text"]]
    assert printed, [m["msg_type"] for m in seen]
    assert all(m["parent_header"]["msg_id"] == on_id for m in printed)
    reply, out = _execute(kernel, "%dataflow watch off")
    assert reply["status"] == "ok" and "watch: off" in _stdout(out)
