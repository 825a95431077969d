"""The package's shape: CONTRIBUTING.md's module map and import direction, one job per module, no long module."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from course_utils.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "course_utils"
MAX_LINES = 260  # a longer module says why it stays one piece, in its docstring
STAYS_ONE = "stays one piece"


def module_order() -> list[str]:
    """Top-level module (or subpackage) names in the order of CONTRIBUTING.md's module map."""
    text = (REPO_ROOT / "CONTRIBUTING.md").read_text()
    table = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    order = []
    for row in table.splitlines():
        if row.startswith("| ") and "`" in row and not row.startswith("| layer"):
            for name in re.findall(r"`([\w/]+?)(?:\.py|/)`", row.split("|")[2]):
                order.append(name)
    return order


def imports_of(path: Path) -> set[str]:
    """Top-level course_utils modules that ``path`` imports (relative or absolute)."""
    found = set()
    inside = path.relative_to(PACKAGE).parts
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(inside[:-1])[: len(inside) - node.level]
                target = base + (node.module.split(".") if node.module else [a.name for a in node.names][:1])
            elif node.module and node.module.startswith("course_utils."):
                target = node.module.split(".")[1:]
            else:
                continue
            found.add(target[0])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("course_utils."))
    return found


def top_level_modules() -> dict[str, list[Path]]:
    modules: dict[str, list[Path]] = {}
    for path in PACKAGE.rglob("*.py"):
        if "__pycache__" in path.parts or path.parent == PACKAGE and path.name == "__init__.py":
            continue
        top = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        modules.setdefault(top, []).append(path)
    return modules


def test_every_module_is_in_the_map_once():
    order, modules = module_order(), top_level_modules()
    assert len(order) == len(set(order)), "a module is listed twice"
    assert set(order) == set(modules), f"not in the map: {set(modules) - set(order)}; gone: {set(order) - set(modules)}"


def test_imports_only_go_down_the_map():
    order = module_order()
    rank = {name: index for index, name in enumerate(order)}
    upward = []
    for top, paths in top_level_modules().items():
        for path in paths:
            for dep in imports_of(path):
                if dep != top and dep in rank and rank[dep] <= rank[top]:
                    upward.append(f"{path.relative_to(REPO_ROOT)} imports {dep}")
    assert not upward, upward


def package_files() -> list[Path]:
    """Every module of the package, subpackages and ``__init__.py`` files included."""
    return sorted(path for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts)


def test_each_module_says_its_job_in_one_first_line():
    for path in package_files():
        doc = ast.get_docstring(ast.parse(path.read_text()))
        lines = doc.splitlines() if doc else []
        assert lines and lines[0].strip(), f"{path.relative_to(REPO_ROOT)} has no one-line docstring"
        assert len(lines) == 1 or not lines[1].strip(), f"{path.relative_to(REPO_ROOT)}: its job is not one line"


@pytest.mark.parametrize("path", package_files(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_a_long_module_says_why_it_stays_one_piece(path):
    text = path.read_text()
    length = len(text.splitlines())
    doc = ast.get_docstring(ast.parse(text)) or ""
    assert length <= MAX_LINES or STAYS_ONE in doc.lower(), (
        f"{path.relative_to(REPO_ROOT)} has {length} lines (> {MAX_LINES}): split it by concern, or add one sentence "
        f"'Stays one piece: <why>' to its docstring")


def test_no_module_imports_another_modules_private_names():
    private = []
    for path in package_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("course_utils")):
                private += [f"{path.relative_to(REPO_ROOT)}: {alias.name}" for alias in node.names
                            if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not private, f"make these public (with a docstring) in the module that owns them: {private}"
