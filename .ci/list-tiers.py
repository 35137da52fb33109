#!/usr/bin/env python3
"""Lists noxfile.py's test tiers without nox: `make tiers` on a machine with Python alone.

nox's own `--list` needs nox, and so the test environment; this reads noxfile.py's
source instead (each function decorated with nox.session: its name, tags and the first
sentence of its docstring), in the order `make test` runs them.
"""

from __future__ import annotations

import ast
import contextlib
import sys
from pathlib import Path

NOXFILE = Path(__file__).resolve().parents[1] / "noxfile.py"


def _is_session(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return ast.unparse(target) in {"nox.session", "session"}


def _tags(decorator: ast.expr, constants: dict[str, object]) -> list[str]:
    if not isinstance(decorator, ast.Call):
        return []
    for keyword in decorator.keywords:
        if keyword.arg == "tags":
            value = keyword.value
            if isinstance(value, ast.Name):
                return list(constants.get(value.id, []))  # type: ignore[call-overload]
            return list(ast.literal_eval(value))
    return []


def tiers(source: str) -> list[tuple[str, list[str], str]]:
    """(name, tags, summary) of each tier, in the file's order."""
    module = ast.parse(source)
    constants: dict[str, object] = {}
    for node in module.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                with contextlib.suppress(ValueError):  # not a literal: not a tag list
                    constants[target.id] = ast.literal_eval(node.value)
    found = []
    for node in module.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if _is_session(decorator):
                doc = " ".join((ast.get_docstring(node) or "").split())
                summary = doc.split(". ")[0].rstrip(".")
                found.append((node.name, _tags(decorator, constants), summary))
    return found


def main() -> int:
    listed = tiers(NOXFILE.read_text(encoding="utf-8"))
    width = max(len(name) for name, _, _ in listed)
    print('Test tiers of noxfile.py (make test TIERS="a b" or make test-<tier> runs some):')
    for name, tags, summary in listed:
        tagged = f"  [{', '.join(tags)}]" if tags else ""
        print(f"  {name:<{width}}  {summary}{tagged}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
