"""Fingerprints: SHA-256 over named parts, so staleness can say which part changed.

A task's fingerprint hashes the canonical code, the configuration and the sorted data
versions of the input partitions it reads. Every part is length-prefixed before
hashing so that no two different part lists can collide by concatenation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

FORMAT = "jupyter-dataflow/1"


def digest(*chunks: str) -> str:
    """SHA-256 over length-prefixed chunks: no two chunk lists hash alike by concatenation."""
    h = hashlib.sha256()
    for chunk in chunks:
        data = chunk.encode("utf-8")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


@dataclass(frozen=True)
class InputVersion:
    """One input partition a task reads: which stage, which partition, which content."""

    stage: str
    partition: str
    version: str


@dataclass(frozen=True)
class Fingerprint:
    """The named parts of a task's identity and the digest over them."""

    code: str
    config: str
    inputs: str

    @property
    def digest(self) -> str:
        return digest(FORMAT, "code", self.code, "config", self.config, "inputs", self.inputs)

    def parts(self) -> dict[str, str]:
        return {"code": self.code, "config": self.config, "inputs": self.inputs}

    def changed_parts(self, other: Mapping[str, str] | None) -> list[str]:
        """Names of the parts that differ from a previously stored `parts()` dict."""
        if not other:
            return ["code", "config", "inputs"]
        return [k for k, v in self.parts().items() if other.get(k) != v]


def compute(code: str, config: Mapping[str, Any], inputs: Iterable[InputVersion]) -> Fingerprint:
    """The fingerprint of a task: pure, deterministic, order-independent in `inputs`."""
    return Fingerprint(
        code=digest("code", code),
        config=digest("config", json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)),
        inputs=inputs_part(inputs),
    )


def inputs_part(inputs: Iterable[InputVersion]) -> str:
    """The `inputs` part of a fingerprint alone, as `compute` makes it.

    Cheaper than `compute` where only the inputs can have changed: a planner compares
    it with the part recorded at commit to find which partitions need fingerprinting.
    """
    ordered = sorted(inputs, key=lambda i: (i.stage, i.partition, i.version))
    return digest("inputs", str(len(ordered)), *(c for i in ordered for c in (i.stage, i.partition, i.version)))


def combine(versions: Iterable[tuple[str, str]]) -> str:
    """One version for a set of (partition, version) pairs, order-independent."""
    pairs = sorted(versions)
    return digest("set", str(len(pairs)), *(c for p in pairs for c in p))


def file_identity(path: str, size: int, mtime_ns: int, content_hash: str | None) -> str:
    return digest("file", path, str(size), str(mtime_ns), content_hash or "")
