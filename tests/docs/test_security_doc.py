"""docs/security.md names the test that shows each control: every name it gives must exist."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"
# `tests/x.py::test_name` and the short form `::test_name`, which means the last file named before it.
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`")


def functions_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def references() -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    current: str | None = None
    for file, name in REFERENCE.findall(DOC.read_text(encoding="utf-8")):
        if not file and not name:
            continue
        current = file or current
        assert current, f"`::{name}` comes before any file is named"
        found.append((current, name or None))
    return found


def test_every_test_the_security_page_names_exists():
    refs = references()
    assert len(refs) > 50  # the page is read, not silently skipped
    missing = []
    for file, name in refs:
        path = ROOT / file
        if not path.exists():
            missing.append(file)
        elif name and name not in functions_in(path):
            missing.append(f"{file}::{name}")
    assert not missing, f"docs/security.md names tests that do not exist: {missing}"
