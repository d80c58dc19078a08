"""app/workup stays pure: no web, database or HTTP imports (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WORKUP = Path(__file__).resolve().parents[1] / "app" / "workup"
FORBIDDEN = ("fastapi", "starlette", "sqlalchemy", "httpx", "app.db", "app.api")


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


@pytest.mark.parametrize("path", sorted(WORKUP.rglob("*.py")), ids=lambda p: p.name)
def test_workup_module_has_no_forbidden_imports(path: Path) -> None:
    bad = [name for name in _imports(path) if _forbidden(name)]
    assert bad == [], f"{path} imports {bad}"


def test_detector_flags_forbidden_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import httpx\nfrom app.db.models import X\nfrom sqlalchemy import select\n"
    )
    assert [n for n in _imports(sample) if _forbidden(n)] == [
        "httpx",
        "app.db.models",
        "sqlalchemy",
    ]
    assert not _forbidden("app.dbx")
