"""Fails on an import of the project's own code inside a function.

Such an import usually hides a cycle or an upward arrow from import-linter's
readers (and from people). Allowed: ``AppConfig.ready()`` (Django's place for
wiring an app up once the registry is ready) and annotation-only imports under
``if TYPE_CHECKING:``. Usage: python scripts/check_local_imports.py [paths...]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

OWN = ("apps", "llmagentos", "plugins")


def _own(module: str | None) -> bool:
    return module is not None and module.split(".")[0] in OWN


def local_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, child.name)
                continue
            if function is not None and function != "ready":
                names: list[str | None] = []
                if isinstance(child, ast.Import):
                    names = [alias.name for alias in child.names]
                elif isinstance(child, ast.ImportFrom) and child.level == 0:
                    names = [child.module]
                for name in names:
                    if _own(name):
                        found.append(f"{path}:{child.lineno}: {name} imported inside {function}()")
            visit(child, function)

    visit(tree, None)
    return found


def main(paths: list[str]) -> int:
    roots = [Path(p) for p in paths] or [Path(p) for p in OWN]
    problems = [
        problem
        for root in roots
        for path in sorted(root.rglob("*.py") if root.is_dir() else [root])
        if "migrations" not in path.parts
        for problem in local_imports(path)
    ]
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
