"""The metadata database: SQLite in WAL mode, one connection per thread.

It holds flows, stage definitions, committed objects (and, for source partitions, the
inputs part of their fingerprints), which object is current for every (flow, stage,
role, partition), per-stage reconcile state and run history. A commit is one
transaction: readers see the old mapping or the new one. A home written by an older
version is brought up to date when it is opened (`_migrate`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2

_DDL = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS flows(
    name TEXT PRIMARY KEY, parent TEXT, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS stages(
    flow TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL, definition TEXT NOT NULL,
    def_hash TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL, mode TEXT,
    PRIMARY KEY(flow, name));
CREATE TABLE IF NOT EXISTS objects(
    fingerprint TEXT PRIMARY KEY, path TEXT NOT NULL, rows INTEGER NOT NULL, bytes INTEGER NOT NULL,
    data_version TEXT NOT NULL, schema TEXT NOT NULL, parts TEXT NOT NULL, inputs TEXT NOT NULL,
    code TEXT NOT NULL, stage TEXT NOT NULL, partition TEXT NOT NULL,
    started_at REAL NOT NULL, finished_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS current(
    flow TEXT NOT NULL, stage TEXT NOT NULL, role TEXT NOT NULL, partition TEXT NOT NULL,
    fingerprint TEXT NOT NULL, data_version TEXT NOT NULL, committed_at REAL NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY(flow, stage, role, partition));
CREATE INDEX IF NOT EXISTS current_fp ON current(fingerprint);
CREATE TABLE IF NOT EXISTS inputs_parts(
    fingerprint TEXT PRIMARY KEY, part TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS history(
    flow TEXT NOT NULL, stage TEXT NOT NULL, role TEXT NOT NULL, partition TEXT NOT NULL,
    fingerprint TEXT NOT NULL, committed_at REAL NOT NULL, replaced_at REAL);
CREATE INDEX IF NOT EXISTS history_fp ON history(fingerprint);
CREATE TABLE IF NOT EXISTS stage_state(
    flow TEXT NOT NULL, stage TEXT NOT NULL, state TEXT NOT NULL, error TEXT,
    def_hash TEXT, inputs_version TEXT, output_version TEXT, detail TEXT,
    updated_at REAL NOT NULL, PRIMARY KEY(flow, stage));
CREATE TABLE IF NOT EXISTS source_schema(
    flow TEXT NOT NULL, stage TEXT NOT NULL, def_hash TEXT NOT NULL, schema TEXT NOT NULL,
    key_type TEXT, PRIMARY KEY(flow, stage));
CREATE TABLE IF NOT EXISTS file_hashes(
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, hash TEXT NOT NULL,
    hashed_at_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS leases(
    name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS runs(
    id INTEGER PRIMARY KEY AUTOINCREMENT, flow TEXT NOT NULL, started_at REAL NOT NULL,
    finished_at REAL, executed INTEGER, reused INTEGER, failed INTEGER, status TEXT NOT NULL);
"""


@dataclass(frozen=True)
class ObjectRecord:
    """A committed, immutable output identified by its fingerprint."""

    fingerprint: str
    path: str
    rows: int
    bytes: int
    data_version: str
    schema: str
    parts: dict[str, str]
    inputs: list[list[str]]
    code: str
    stage: str
    partition: str
    started_at: float
    finished_at: float


@dataclass(frozen=True)
class CurrentRecord:
    """Which object a (flow, stage, role, partition) points to now."""

    stage: str
    role: str
    partition: str
    fingerprint: str
    data_version: str
    committed_at: float
    reason: str


@dataclass(frozen=True)
class StageState:
    stage: str
    state: str
    error: str | None
    def_hash: str | None
    inputs_version: str | None
    output_version: str | None
    detail: dict[str, Any]
    updated_at: float


@dataclass(frozen=True)
class Publish:
    """One partition to make current in a commit (or remove, when `object` is None)."""

    stage: str
    role: str
    partition: str
    object: ObjectRecord | None
    reason: str


class Metadata:
    """Thread-safe access to the metadata database of one home."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn().executescript(_DDL)  # idempotent; executescript commits on its own
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            _migrate(db)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: all or nothing, serialised with other writers."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return list(self._conn().execute(sql, tuple(args)))

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # the home -------------------------------------------------------------------------
    def store_root(self) -> str | None:
        """The data store root this home's objects live under (None: not recorded yet)."""
        rows = self.query("SELECT value FROM meta WHERE key = 'store_root'")
        return str(rows[0]["value"]) if rows else None

    def record_store_root(self, root: str) -> str:
        """Record `root` unless a root is recorded already; return the recorded one."""
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO meta VALUES ('store_root', ?)", (root,))
            return str(db.execute("SELECT value FROM meta WHERE key = 'store_root'").fetchone()[0])

    # flows and stages -------------------------------------------------------------
    def ensure_flow(self, flow: str, parent: str | None = None) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO flows VALUES (?, ?, ?)", (flow, parent, time.time()))

    def flows(self) -> list[str]:
        return [r["name"] for r in self.query("SELECT name FROM flows ORDER BY name")]

    def flow_parent(self, flow: str) -> str | None:
        rows = self.query("SELECT parent FROM flows WHERE name = ?", (flow,))
        return rows[0]["parent"] if rows else None

    def stage_definitions(self, flow: str) -> list[dict[str, Any]]:
        rows = self.query("SELECT definition FROM stages WHERE flow = ? ORDER BY created_at, name", (flow,))
        return [json.loads(r["definition"]) for r in rows]

    def stage_modes(self, flow: str) -> dict[str, dict[str, Any]]:
        rows = self.query("SELECT name, mode FROM stages WHERE flow = ?", (flow,))
        return {r["name"]: json.loads(r["mode"]) for r in rows if r["mode"]}

    def put_stage_modes(self, flow: str, modes: Mapping[str, Mapping[str, Any]]) -> None:
        with self.transaction() as db:
            db.executemany("UPDATE stages SET mode = ? WHERE flow = ? AND name = ?",
                           [(json.dumps(m, sort_keys=True), flow, n) for n, m in modes.items()])

    def put_stage(self, flow: str, name: str, kind: str, definition: Mapping[str, Any], def_hash: str) -> None:
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO stages VALUES (?, ?, ?, ?, ?, ?, ?, NULL) ON CONFLICT(flow, name) DO UPDATE SET "
                "kind = excluded.kind, definition = excluded.definition, def_hash = excluded.def_hash, "
                "updated_at = excluded.updated_at",
                (flow, name, kind, json.dumps(definition, sort_keys=True), def_hash, now, now),
            )

    def drop_stage(self, flow: str, name: str) -> None:
        now = time.time()
        with self.transaction() as db:
            db.execute("DELETE FROM stages WHERE flow = ? AND name = ?", (flow, name))
            db.execute("UPDATE history SET replaced_at = ? WHERE flow = ? AND stage = ? AND replaced_at IS NULL",
                       (now, flow, name))
            db.execute("DELETE FROM current WHERE flow = ? AND stage = ?", (flow, name))
            db.execute("DELETE FROM stage_state WHERE flow = ? AND stage = ?", (flow, name))
            db.execute("DELETE FROM source_schema WHERE flow = ? AND stage = ?", (flow, name))

    def copy_flow(self, source: str, target: str) -> None:
        """Create `target` as a branch of `source`: same blueprint, same current outputs."""
        now = time.time()
        with self.transaction() as db:
            db.execute("INSERT INTO flows VALUES (?, ?, ?)", (target, source, now))
            for table in ("stages", "current", "stage_state", "source_schema"):
                cols = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
                rest = ", ".join(c for c in cols if c != "flow")
                db.execute(f"INSERT INTO {table} (flow, {rest}) SELECT ?, {rest} FROM {table} WHERE flow = ?",
                           (target, source))
            db.execute("INSERT INTO history SELECT ?, stage, role, partition, fingerprint, committed_at, NULL "
                       "FROM current WHERE flow = ?", (target, source))

    # objects and current ----------------------------------------------------------
    def object(self, fingerprint: str) -> ObjectRecord | None:
        rows = self.query("SELECT * FROM objects WHERE fingerprint = ?", (fingerprint,))
        return _object(rows[0]) if rows else None

    def objects(self, fingerprints: Iterable[str]) -> dict[str, ObjectRecord]:
        fps = list(dict.fromkeys(fingerprints))
        out: dict[str, ObjectRecord] = {}
        for i in range(0, len(fps), 500):
            chunk = fps[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for r in self.query(f"SELECT * FROM objects WHERE fingerprint IN ({marks})", chunk):
                out[r["fingerprint"]] = _object(r)
        return out

    def add_object(self, o: ObjectRecord) -> None:
        """Record a published object (not yet current anywhere) so later runs can reuse it."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (o.fingerprint, o.path, o.rows, o.bytes, o.data_version, o.schema,
                 json.dumps(o.parts, sort_keys=True), json.dumps(o.inputs), o.code, o.stage,
                 o.partition, o.started_at, o.finished_at),
            )

    def last_schema(self, stage: str) -> str | None:
        """The schema of the newest object any flow committed for a stage name."""
        rows = self.query("SELECT schema FROM objects WHERE stage = ? AND path != '' "
                          "ORDER BY finished_at DESC LIMIT 1", (stage,))
        return rows[0]["schema"] if rows else None

    def has_current(self, flow: str, stage: str, role: str = "output") -> bool:
        """Whether a stage has any current partition (without loading them)."""
        return bool(self.query("SELECT 1 FROM current WHERE flow = ? AND stage = ? AND role = ? LIMIT 1",
                               (flow, stage, role)))

    def current(self, flow: str, stage: str | None = None, role: str | None = None) -> list[CurrentRecord]:
        sql = "SELECT * FROM current WHERE flow = ?"
        args: list[Any] = [flow]
        if stage is not None:
            sql += " AND stage = ?"
            args.append(stage)
        if role is not None:
            sql += " AND role = ?"
            args.append(role)
        return [_current(r) for r in self.query(sql + " ORDER BY stage, role, partition", args)]

    def committed_inputs(self, flow: str, stage: str) -> dict[str, tuple[str, str | None]]:
        """Output partition -> (fingerprint, inputs part of that fingerprint) of a source.

        The inputs part is None where it was not recorded (a partition committed by an
        older version and not found by `_migrate`): fingerprint that partition in full.
        """
        rows = self._conn().execute(
            "SELECT c.partition, c.fingerprint, i.part FROM current c "
            "LEFT JOIN inputs_parts i ON i.fingerprint = c.fingerprint "
            "WHERE c.flow = ? AND c.stage = ? AND c.role = 'output'", (flow, stage))
        return {pid: (fp, part) for pid, fp, part in rows}

    def commit(self, flow: str, publishes: Iterable[Publish], state: StageState | None = None) -> None:
        """Publish objects and move `current` pointers in one transaction.

        For a source partition, also records the inputs part of its fingerprint (a hash
        of its files' identities), which lets planning skip its unchanged partitions.
        """
        now = time.time()
        publishes = list(publishes)
        with self.transaction() as db:
            sources = _sources(db, flow, {p.stage for p in publishes if p.object is not None})
            for p in publishes:
                if p.object is not None:
                    o = p.object
                    db.execute(
                        "INSERT OR IGNORE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (o.fingerprint, o.path, o.rows, o.bytes, o.data_version, o.schema,
                         json.dumps(o.parts, sort_keys=True), json.dumps(o.inputs), o.code, o.stage,
                         o.partition, o.started_at, o.finished_at),
                    )
                    if p.stage in sources and "inputs" in o.parts:
                        db.execute("INSERT OR IGNORE INTO inputs_parts VALUES (?, ?)",
                                   (o.fingerprint, o.parts["inputs"]))
                prev = db.execute(
                    "SELECT fingerprint FROM current WHERE flow=? AND stage=? AND role=? AND partition=?",
                    (flow, p.stage, p.role, p.partition)).fetchone()
                if prev is not None and (p.object is None or prev[0] != p.object.fingerprint):
                    db.execute("UPDATE history SET replaced_at = ? WHERE flow=? AND stage=? AND role=? "
                               "AND partition=? AND replaced_at IS NULL", (now, flow, p.stage, p.role, p.partition))
                if p.object is None:
                    db.execute("DELETE FROM current WHERE flow=? AND stage=? AND role=? AND partition=?",
                               (flow, p.stage, p.role, p.partition))
                    continue
                if prev is not None and prev[0] == p.object.fingerprint:
                    continue
                db.execute(
                    "INSERT INTO current VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(flow, stage, role, partition) "
                    "DO UPDATE SET fingerprint=excluded.fingerprint, data_version=excluded.data_version, "
                    "committed_at=excluded.committed_at, reason=excluded.reason",
                    (flow, p.stage, p.role, p.partition, p.object.fingerprint, p.object.data_version, now, p.reason),
                )
                db.execute("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, NULL)",
                           (flow, p.stage, p.role, p.partition, p.object.fingerprint, now))
            if state is not None:
                self._put_state(db, flow, state)
            fault_point("commit", {p.stage for p in publishes} | ({state.stage} if state else set()))

    def _put_state(self, db: sqlite3.Connection, flow: str, s: StageState) -> None:
        db.execute(
            "INSERT INTO stage_state VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(flow, stage) DO UPDATE SET "
            "state=excluded.state, error=excluded.error, def_hash=excluded.def_hash, "
            "inputs_version=excluded.inputs_version, output_version=excluded.output_version, "
            "detail=excluded.detail, updated_at=excluded.updated_at",
            (flow, s.stage, s.state, s.error, s.def_hash, s.inputs_version, s.output_version,
             json.dumps(s.detail, sort_keys=True), s.updated_at),
        )

    def put_state(self, flow: str, state: StageState) -> None:
        with self.transaction() as db:
            self._put_state(db, flow, state)

    def states(self, flow: str) -> dict[str, StageState]:
        rows = self.query("SELECT * FROM stage_state WHERE flow = ?", (flow,))
        return {r["stage"]: StageState(r["stage"], r["state"], r["error"], r["def_hash"], r["inputs_version"],
                                       r["output_version"], json.loads(r["detail"] or "{}"), r["updated_at"])
                for r in rows}

    def source_schema(self, flow: str, stage: str, def_hash: str) -> tuple[str, str | None] | None:
        # A schema recorded for the same definition in another flow of the home is as
        # good as our own: sharing it keeps ingest fingerprints (and dedup) equal.
        rows = self.query("SELECT schema, key_type FROM source_schema WHERE def_hash=? "
                          "ORDER BY (flow = ? AND stage = ?) DESC LIMIT 1", (def_hash, flow, stage))
        return (rows[0]["schema"], rows[0]["key_type"]) if rows else None

    def put_source_schema(self, flow: str, stage: str, def_hash: str, schema: str, key_type: str | None) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO source_schema VALUES (?, ?, ?, ?, ?)",
                       (flow, stage, def_hash, schema, key_type))

    # content hashes of small source files -------------------------------------------
    def file_hashes(self, paths: Iterable[str]) -> dict[str, tuple[int, int, str, int]]:
        wanted = list(paths)
        out: dict[str, tuple[int, int, str, int]] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for r in self.query(f"SELECT * FROM file_hashes WHERE path IN ({marks})", chunk):
                out[r["path"]] = (r["size"], r["mtime_ns"], r["hash"], r["hashed_at_ns"])
        return out

    def put_file_hashes(self, rows: Iterable[tuple[str, int, int, str, int]]) -> None:
        rows = list(rows)
        if not rows:
            return
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?, ?)", rows)

    # leases -----------------------------------------------------------------------
    def acquire(self, name: str, owner: str, ttl: float) -> str | None:
        """Take lease `name` for `owner` unless another live owner holds it.

        Returns None on success, else the current holder. Expired leases (a crashed
        holder stops renewing) are taken over.
        """
        now = time.time()
        with self.transaction() as db:
            row = db.execute("SELECT owner, expires_at FROM leases WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] != owner and row[1] > now:
                return str(row[0])
            db.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?)", (name, owner, now + ttl))
            return None

    def take_over(self, name: str, previous: str, owner: str, ttl: float) -> bool:
        """Give lease `name` to `owner` if `previous` still holds it (its process is gone)."""
        with self.transaction() as db:
            cur = db.execute("UPDATE leases SET owner = ?, expires_at = ? WHERE name = ? AND owner = ?",
                             (owner, time.time() + ttl, name, previous))
            return cur.rowcount == 1

    def renew(self, owner: str, ttl: float) -> None:
        with self.transaction() as db:
            db.execute("UPDATE leases SET expires_at = ? WHERE owner = ?", (time.time() + ttl, owner))

    def release(self, name: str, owner: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    def live_leases(self, prefix: str = "") -> dict[str, str]:
        rows = self.query("SELECT name, owner FROM leases WHERE expires_at > ? AND name LIKE ?",
                          (time.time(), prefix + "%"))
        return {r["name"]: r["owner"] for r in rows}

    # runs -------------------------------------------------------------------------
    def start_run(self, flow: str) -> int:
        with self.transaction() as db:
            cur = db.execute("INSERT INTO runs (flow, started_at, status) VALUES (?, ?, 'running')",
                             (flow, time.time()))
            return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, executed: int, reused: int, failed: int) -> None:
        with self.transaction() as db:
            db.execute("UPDATE runs SET finished_at=?, executed=?, reused=?, failed=?, status=? WHERE id=?",
                       (time.time(), executed, reused, failed, "failed" if failed else "succeeded", run_id))


def _sources(db: sqlite3.Connection, flow: str, stages: set[str]) -> set[str]:
    """Which of `stages` are sources of `flow`."""
    marks = ",".join("?" * len(stages))
    return {r[0] for r in db.execute(f"SELECT name FROM stages WHERE flow = ? AND kind = 'source' "
                                     f"AND name IN ({marks})", [flow, *sorted(stages)])}


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a home written by an older version up to SCHEMA_VERSION, inside `db`'s transaction.

    Version 2 records the inputs part of each committed source partition's fingerprint
    (table `inputs_parts`, keyed by fingerprint, so a row can never go stale), read back
    from the stored objects of the partitions current now. Keyed by fingerprint rather
    than a column of `current`, a process still running an older version writes to the
    home as before; what it commits has no inputs part and is fingerprinted in full.
    """
    version = int(db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    if version >= 2:
        return
    # CROSS JOIN fixes the loop order: from the few source stages to their partitions,
    # not through every row of `current` (a million in a large home).
    rows = db.execute(
        "SELECT DISTINCT o.fingerprint, o.parts FROM stages s "
        "CROSS JOIN current c ON c.flow = s.flow AND c.stage = s.name "
        "CROSS JOIN objects o ON o.fingerprint = c.fingerprint WHERE s.kind = 'source'").fetchall()
    parts = ((fp, json.loads(text).get("inputs")) for fp, text in rows)
    db.executemany("INSERT OR IGNORE INTO inputs_parts VALUES (?, ?)", [(fp, p) for fp, p in parts if p])
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


_FAULT_HITS: dict[str, int] = {}
_FAULT_LOCK = threading.Lock()


def fault_point(name: str, stages: set[str] | None = None) -> None:
    """Stop here when JUPYTER_DATAFLOW_FAULT names this point (crash-safety tests).

    The setting is `NAME` or `NAME:STAGE`; the points are `staged` (a task's output is
    written to staging, not yet moved), `published` (moved to its content address, not
    yet recorded) and `commit` (inside the metadata transaction, before COMMIT).
    JUPYTER_DATAFLOW_FAULT_SKIP=N lets the first N matching hits pass. Writes
    `<NAME>.reached` into JUPYTER_DATAFLOW_FAULT_DIR, then either sleeps (so a test
    kills the process from outside) or, with JUPYTER_DATAFLOW_FAULT_ACTION=kill, sends
    itself SIGKILL on the spot. A no-op when the setting is absent.
    """
    wanted = os.environ.get("JUPYTER_DATAFLOW_FAULT")
    if not wanted:
        return
    point, _, stage = wanted.partition(":")
    if point != name or (stage and stage not in (stages or set())):
        return
    with _FAULT_LOCK:
        hits = _FAULT_HITS[wanted] = _FAULT_HITS.get(wanted, 0) + 1
        if hits <= int(os.environ.get("JUPYTER_DATAFLOW_FAULT_SKIP", "0")):
            return
        folder = Path(os.environ.get("JUPYTER_DATAFLOW_FAULT_DIR", "."))
        (folder / f"{name}.reached").write_text(str(os.getpid()))
        if os.environ.get("JUPYTER_DATAFLOW_FAULT_ACTION") == "kill":
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(float(os.environ.get("JUPYTER_DATAFLOW_FAULT_SLEEP", "120")))


def _object(r: sqlite3.Row) -> ObjectRecord:
    return ObjectRecord(r["fingerprint"], r["path"], r["rows"], r["bytes"], r["data_version"], r["schema"],
                        json.loads(r["parts"]), json.loads(r["inputs"]), r["code"], r["stage"], r["partition"],
                        r["started_at"], r["finished_at"])


def _current(r: sqlite3.Row) -> CurrentRecord:
    return CurrentRecord(r["stage"], r["role"], r["partition"], r["fingerprint"], r["data_version"],
                         r["committed_at"], r["reason"])
