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



# --- the worked example of docs/architecture.md ----------------------------------------------------

def example_files() -> tuple[dict[str, str], str]:
    """The example's files (path -> code, each the python block after the last path named before
    it) and its blueprint."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Worked example", 1)[1]
    files, at = {}, 0
    for block in re.finditer(r"```(python|yaml)\n(.*?)```", section, re.S):
        named = re.findall(r"`(composer/[\w/]+\.py)`", section[at:block.start()])
        if block[1] == "python":
            files[named[-1]] = block[2]
        else:
            blueprint = block[2]
        at = block.end()
    return files, blueprint


EXAMPLE_RUN = """
import importlib.util, sys
import torch
import composer
import composer.blocks.transformer.attention

for name, path in FILES:  # as if the files were in the tree
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
bp = composer.loads(BLUEPRINT)
net = composer.build(bp).eval()
with torch.no_grad():
    out = net(torch.randn(2, *net.input_shape))
assert out.shape == (2, bp.model.classes), out.shape
report = composer.check(bp)
assert report.ok, report.to_dict()
print(sum(p.numel() for p in net.parameters()))
"""


def test_the_worked_example_is_two_files_that_work(tmp_path):
    import subprocess
    import sys

    files, blueprint = example_files()
    assert sorted(files) == ["composer/blocks/transformer/attention/cosine.py", "composer/layers/cosine_attention.py"]
    assert not any((ROOT / path).exists() for path in files), "the example names a file the tree already has"
    modules = []
    for path, code in sorted(files.items(), key=lambda kv: "blocks" in kv[0]):  # the layer first
        local = tmp_path / Path(path).name
        local.write_text(code, encoding="utf-8")
        modules.append((path.removesuffix(".py").replace("/", "."), str(local)))
    code = f"FILES = {modules!r}\nBLUEPRINT = {blueprint!r}\n" + EXAMPLE_RUN
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.strip()) > 0
