"""The shape of the code: short functions, modules that are modules, imports that follow the data flow.

The dependency table is the one in docs/architecture.md, read from there, so the document and the
check cannot drift apart.
"""

from __future__ import annotations

import ast
import importlib
import re
import types
from pathlib import Path

import pytest

import composer

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 80
API_FUNCTIONS = sorted(name for name in composer.__all__ if name.islower())


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = [module_name(p) for p in python_files("composer")]


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in python_files("composer", "cli"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, f"functions over {MAX_LINES} lines:\n" + "\n".join(long)


def test_the_api_functions_are_known():
    assert {"load", "loads", "plan", "build", "profile", "check", "save", "load_model"} <= set(API_FUNCTIONS)


def test_no_module_is_named_like_an_api_function():
    clash = [m for m in MODULES if m.rsplit(".", 1)[-1] in API_FUNCTIONS]
    assert not clash, f"modules named like API functions: {clash}"


@pytest.mark.parametrize("name", API_FUNCTIONS)
def test_api_names_are_functions_after_every_module_is_imported(name):
    for module in MODULES:
        importlib.import_module(module)
    assert isinstance(getattr(composer, name), types.FunctionType), f"composer.{name} is not the API function"


@pytest.mark.parametrize("module", MODULES)
def test_import_as_gives_a_module(module):
    importlib.import_module(module)
    value = composer
    for part in module.split(".")[1:]:  # what `import composer.X.Y as M` binds M to
        value = getattr(value, part)
    assert isinstance(value, types.ModuleType), f"`import {module} as M` gives {type(value).__name__}"
    assert value.__name__ == module


# --- imports follow docs/architecture.md ----------------------------------------------------------

def allowed_imports() -> dict[str, set[str]]:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## What each package may import", 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        row = re.fullmatch(r"\| `([\w.]+)` \|(.*)\|", line.strip())
        if row:
            table[row[1]] = set(re.findall(r"`([\w.]+)`", row[2]))
    return table


def unit_of(module: str) -> str:
    """The row of the table a module belongs to: `composer.blueprint.loader` -> `blueprint`."""
    parts = module.split(".")
    if parts[0] == "cli":
        return "cli"
    if len(parts) == 1:
        return "composer"
    return parts[1]


def imported_modules(path: Path, module: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module) of every composer import in `path` (read as the module `module`, by
    default its own), those under `if TYPE_CHECKING:` left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                   for child in node.body for n in ast.walk(child)}
    module = module or module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base == "composer":  # `from composer import X`: X is a name of the facade or a package
                found += [(node.lineno, f"composer.{a.name}" if f"composer.{a.name}" in MODULES else "composer")
                          for a in node.names]
            elif base.startswith("composer.") or (base in MODULES):
                found += [(node.lineno, base)]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "composer"]
    return found


def test_every_package_has_a_row():
    table = allowed_imports()
    units = {unit_of(m) for m in MODULES} | {"cli"}
    assert units <= set(table), f"packages missing from docs/architecture.md's table: {sorted(units - set(table))}"
    listed = {entry.split(".")[0] for entries in table.values() for entry in entries}
    assert listed <= set(table), f"the table allows unknown packages: {sorted(listed - set(table))}"


def test_imports_follow_the_table():
    table = allowed_imports()
    wrong = []
    for path in python_files("composer", "cli"):
        source = unit_of(module_name(path))
        allowed = table.get(source, set()) | {source, "errors"}
        for line, target in imported_modules(path):
            unit = unit_of(target)
            dotted = ".".join(target.split(".")[1:])
            if unit in allowed or any(dotted == a or dotted.startswith(a + ".") for a in allowed if "." in a):
                continue
            wrong.append(f"{path.relative_to(ROOT)}:{line} ({source}) imports {target}")
    assert not wrong, "imports the table of docs/architecture.md does not allow:\n" + "\n".join(wrong)


def test_the_import_check_sees_a_forbidden_import(tmp_path):
    # the check itself: an import reaching back up (planning -> network) is found and not allowed
    bad = tmp_path / "bad.py"
    bad.write_text("from composer.network.composed import ComposedNet\nif TYPE_CHECKING:\n    import composer.api\n")
    found = imported_modules(bad, "composer.planning.bad")
    assert found == [(1, "composer.network.composed")]
    assert "network" not in allowed_imports()["planning"]

