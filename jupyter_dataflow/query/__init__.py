"""Ad hoc queries over committed stages: a fast in-process DuckDB path where it is provably safe."""

from jupyter_dataflow.query.duckdb_engine import run_duckdb
from jupyter_dataflow.query.duckdb_translate import transpile
from jupyter_dataflow.query.duckdb_types import DuckdbRefusal

__all__ = ["DuckdbRefusal", "run_duckdb", "transpile"]
