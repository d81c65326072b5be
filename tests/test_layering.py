"""The packages' layering, from the imports themselves: ``bus`` at the bottom, the parts
(``workers``, ``capture_agent``, ``player_agent``) on it, ``ops`` (the command line, stack,
evaluation) on top. Nothing imports upward, not even inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("workers", "capture_agent", "player_agent")

# package -> the top-level packages it must not import
FORBIDDEN = {
    "bus": ("ops", *PARTS),
    **{part: ("ops",) for part in PARTS},
}


def imported(path: Path) -> list[tuple[int, str]]:
    """Every absolute module an import statement of ``path`` names, with its line."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def violations(package: str) -> list[str]:
    banned = FORBIDDEN[package]
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imported(path):
            if module.split(".", 1)[0] in banned:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_imports(package: str) -> None:
    assert violations(package) == []


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("import json\n\ndef f():\n    from ops.cli import main\n    import ops\n")
    assert [m for _, m in imported(source)] == ["json", "ops.cli", "ops"]
