"""Layers point one way: the contract module imports nothing of ours; evaluation/ only the contract and itself;
models/ reach data only through the contract (read from the source, so no import side effects count)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "unirec_lab"


def our_imports(path: Path) -> set[str]:
    """Every ``unirec_lab...`` module a file imports, at any depth (lazy imports too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("unirec_lab"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("unirec_lab"))
    return out


@pytest.mark.parametrize(("files", "allowed"), [
    (["features.py"], ()),
    (["evaluation"], ("unirec_lab.features", "unirec_lab.evaluation")),
    (["models"], ("unirec_lab.features", "unirec_lab.models", "unirec_lab.utils")),
])
def test_imports_point_one_way(files: list[str], allowed: tuple[str, ...]) -> None:
    paths = [p for f in files for p in ([PKG / f] if f.endswith(".py") else sorted((PKG / f).rglob("*.py")))]
    assert paths
    for p in paths:
        bad = sorted(m for m in our_imports(p) if not m.startswith(allowed) or not allowed)
        assert not bad, f"{p.relative_to(PKG.parent)} imports {bad}; allowed: {list(allowed) or 'nothing of ours'}"
