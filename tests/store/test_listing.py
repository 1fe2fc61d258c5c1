"""Source listing: one file identity however the source path is spelled."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jupyter_dataflow.store import listing


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "data" / "src"
    for rel, text in {"date=1/f.csv": "a\n", "date=1/sub/g.csv": "bb\n", "date=2/h.csv": "c\n",
                      "date=2/.part.tmp": "x\n", "_SUCCESS": "", ".hidden/i.csv": "y\n"}.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    return src


@pytest.mark.parametrize("spelling", ["relative", "dotted", "absolute", "trailing", "detour", "glob"])
def test_every_spelling_of_a_source_lists_the_same_files(tree: Path, monkeypatch: pytest.MonkeyPatch,
                                                          spelling: str) -> None:
    monkeypatch.chdir(tree.parent.parent)
    path = {"relative": "data/src", "dotted": "./data/src", "absolute": str(tree), "trailing": "data/src/",
            "detour": f"{tree.parent}/../data//src", "glob": "data/src/date=*/**/*.csv"}[spelling]
    root, files = listing.list_files(path, "src")
    assert root == str(tree)
    expected = ["date=1/f.csv", "date=1/sub/g.csv", "date=2/h.csv"]
    assert [f.relpath for f in files] == expected
    assert [f.path for f in files] == [os.path.join(str(tree), r) for r in expected]
    assert all(f.content_hash for f in files)
