"""Ad hoc queries over committed stages: a fast in-process DuckDB path where it is provably safe."""

from jupyter_dataflow.query.duckdb_engine import DuckdbRefusal, run_duckdb, transpile

__all__ = ["DuckdbRefusal", "run_duckdb", "transpile"]
