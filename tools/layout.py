"""Move composer's modules into the packages of docs/architecture.md and rewrite what names them.

    python tools/layout.py            # move what is still at an old path, rewrite imports and mentions
    python tools/layout.py --check    # only say what would change; exit 1 if anything would
    python tools/layout.py --commit   # the same, as two commits: the pure renames, then the rewrites

Safe to run any number of times, and on a tree where others added files or edited moved ones since:

1. `git mv` every module of MOVES still at its old path (a file already at its new path is left),
   and give each new package an `__init__.py` (only where none exists).
2. Rewrite every import in composer/, cli/, tests/, bench/ and tools/ that names a moved module,
   relative imports staying relative and absolute ones absolute. A relative import in a moved file
   that no longer resolves from its new place is read from its old place first (an edit made
   before the move), then mapped.
3. Rewrite mentions of the old module paths in those folders' comments and strings, docs/*.md and
   README.md: `composer/plan.py`, `composer.fileio.atomic_write`, `python -m composer.reference`.
   A dotted mention of a module that is named like a function (`composer.plan`) is rewritten only
   where a name follows it (`composer.plan.Plan`) or in an import spelled in text (a subprocess's
   code: `from composer.plan import Plan`), since `composer.plan(...)` is the function.

Keep each commit of step 1 free of content edits, so that git's rename detection carries edits
made elsewhere to the old paths across a merge; then run this again on the merged tree.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# old module -> new module (dotted, from the repository root)
MOVES = {
    "composer.fileio": "composer.io.files",
    "composer.limits": "composer.io.room",
    "composer.budgets": "composer.blueprint.budgets",
    "composer.reference": "composer.blueprint.grammar",
    "composer.plan": "composer.planning.planner",
    "composer.build": "composer.network.composed",
    "composer.features": "composer.network.features",
    "composer.profile": "composer.analysis.tracing",
    "composer.check": "composer.analysis.crosscheck",
    "composer.memory": "composer.analysis.memory",
    "composer.repeats": "composer.analysis.repeats",
    "composer.choices": "composer.analysis.options",
    "composer.compare": "composer.tools.compare",
    "composer.draw": "composer.tools.draw",
    "composer.search": "composer.tools.search",
    "composer.timm_adapter": "composer.tools.timm_adapter",
    "composer.weights.load": "composer.weights.loading",
    "composer.blueprint.validate": "composer.blueprint.validation",
    "composer.arguments": "composer.blueprint.arguments",
    "composer.train.evaluate": "composer.train.evaluation",
    "composer.weights.transplant": "composer.weights.part_transplant",
    "composer.parts": "composer.network.parts",
}

# the docstring of each package this layout creates
PACKAGES = {
    "composer.io": "Files and memory of the machine: atomic writes, bounded reads, the memory this process may use.",
    "composer.planning": "The shape pass: a validated blueprint -> per-block contexts (widths, strides, grids, tokens).",
    "composer.network": "A plan -> its nn.Module (ComposedNet), its backbone form (FeatureNet), built once on any device.",
    "composer.analysis": "What a network costs, decided without weights: analytic cost, traced counts, their\n"
                         "cross-check and the training-memory estimate.",
    "composer.tools": "Tools for people built on the pipeline: compare, search, draw, timm's model names.",
}

# public functions of the API: a module of that name is mentioned as such only before a `.name`
API_NAMES = {"load", "loads", "plan", "build", "profile", "check", "train_memory", "save", "load_model",
             "apply_overrides"}
# modules whose name is also a function that their package exports (`composer.blueprint.validate(...)`)
FUNCTION_NAMED = API_NAMES | {"validate", "evaluate", "transplant"}

CODE_DIRS = ("composer", "cli", "tests", "bench", "tools")
TEXT_FILES = ("README.md",)
TEXT_DIRS = ("docs",)
SELF = Path(__file__).resolve()


def module_path(module: str) -> Path:
    return ROOT / (module.replace(".", "/") + ".py")


def exists(module: str) -> bool:
    base = ROOT / module.replace(".", "/")
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


# -- step 1: renames ---------------------------------------------------------------------------------

JUST_MOVED: set[Path] = set()  # files this run moved: their relative imports are written for the old place


def move(dry: bool) -> list[str]:
    done = []
    for package, doc in PACKAGES.items():
        init = ROOT / package.replace(".", "/") / "__init__.py"
        if not init.exists():
            done.append(f"create {init.relative_to(ROOT)}")
            if not dry:
                init.parent.mkdir(parents=True, exist_ok=True)
                init.write_text(f'"""{doc}"""\n')
                git("add", str(init.relative_to(ROOT)))
    for old, new in MOVES.items():
        src, dst = module_path(old), module_path(new)
        if src.exists() and not dst.exists():
            done.append(f"git mv {src.relative_to(ROOT)} {dst.relative_to(ROOT)}")
            if not dry:
                dst.parent.mkdir(parents=True, exist_ok=True)
                git("mv", str(src.relative_to(ROOT)), str(dst.relative_to(ROOT)))
                JUST_MOVED.add(dst)
        elif src.exists() and dst.exists():
            print(f"warning: both {src.relative_to(ROOT)} and {dst.relative_to(ROOT)} exist; merge them by hand",
                  file=sys.stderr)
    return done


# -- step 2: imports -------------------------------------------------------------------------------

def mapped(module: str) -> str | None:
    """The new name of `module` or of a module inside a moved one, else None."""
    for old, new in MOVES.items():
        if module == old or module.startswith(old + "."):
            return new + module[len(old):]
    return None


def package_of(file: Path) -> list[str]:
    parts = list(file.relative_to(ROOT).with_suffix("").parts)
    return parts[:-1]  # a package's __init__ and a module both resolve from their folder


def old_file(file: Path) -> Path | None:
    rel = ".".join(file.relative_to(ROOT).with_suffix("").parts)
    for old, new in MOVES.items():
        if rel == new:
            return module_path(old)
    return None


def resolve(level: int, module: str | None, package: list[str]) -> str | None:
    if level == 0:
        return module
    if level - 1 > len(package):
        return None
    base = package[:len(package) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def relative(target: str, package: list[str]) -> tuple[int, str]:
    """(level, module) of a relative import of `target` from a file in `package`."""
    parts = target.split(".")
    common = 0
    while common < min(len(parts), len(package)) and parts[common] == package[common]:
        common += 1
    return len(package) - common + 1, ".".join(parts[common:])


def defined_names(module: str) -> set[str] | None:
    """The names `module` defines or imports (anywhere in it), and its submodules; None if absent."""
    base = ROOT / module.replace(".", "/")
    file = base / "__init__.py" if (base / "__init__.py").is_file() else base.with_suffix(".py")
    if not file.is_file():
        return None
    names = {p.stem for p in base.glob("*.py")} | {p.name for p in base.iterdir() if (p / "__init__.py").is_file()} \
        if base.is_dir() else set()
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"))
    except SyntaxError:
        return names
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def fits(module: str, names: list[str]) -> bool:
    """Whether `module` (or what it moved to) exists and defines every one of `names`."""
    found = defined_names(mapped(module) or module)
    return found is not None and all(n == "*" or n in found for n in names)


def new_target(level: int, module: str | None, file: Path, names: list[str]) -> tuple[str | None, str | None]:
    """(what the import names now, what it should name), both absolute; None where it is not ours.

    In a file moved by this run, a relative import was written for the old place. In one moved
    before, it was too where it does not fit the new place but fits the old one (an edit made to
    the old path that a merge carried over)."""
    here = resolve(level, module, package_of(file))
    if here is None:
        return None, None
    if level and (old := old_file(file)) is not None:
        before = resolve(level, module, package_of(old))
        if before is not None and (file in JUST_MOVED or (not fits(here, names) and fits(before, names))):
            return here, mapped(before) or before
    return here, mapped(here) or here


def _module_names(node: ast.ImportFrom, file: Path) -> tuple[str, str] | None:
    """(old text, new text) for `from PACKAGE import NAME` where NAME is a moved module."""
    package = resolve(node.level, None, package_of(file))
    old = old_file(file)
    if package is None or len(node.names) != 1:
        return None
    alias = node.names[0]
    full = f"{package}.{alias.name}"
    target = mapped(full)
    if old is not None and (file in JUST_MOVED or (target is None and not exists(full))):
        before = resolve(node.level, None, package_of(old))
        if before is not None:
            target = mapped(f"{before}.{alias.name}") or (f"{before}.{alias.name}" if exists(f"{before}.{alias.name}")
                                                         else None)
    if target is None or target == full:
        return None
    parent, name = target.rsplit(".", 1)
    if node.level:
        level, module = relative(parent, package_of(file))
        parent = "." * level + module
    new = f"from {parent} import {name}"
    if alias.asname is None and name != alias.name:
        new += f" as {alias.name}"
    return f"from {'.' * node.level} import {alias.name}", new


def rewrite_imports(file: Path, text: str) -> str:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return text
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, str, str]] = []  # (line index, old text, new text)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module is None:
            # `from . import memory as M`: the imported names may be moved modules
            edit = _module_names(node, file)
            if edit is not None:
                edits.append((node.lineno - 1, *edit))
        elif isinstance(node, ast.ImportFrom):
            here, want = new_target(node.level, node.module, file, [a.name for a in node.names])
            if here is None or not here.startswith("composer") or want == here:
                continue
            spelled = "." * node.level + node.module
            level, module = relative(want, package_of(file))
            edits.append((node.lineno - 1, f"from {spelled} import",
                          f"from {'.' * level + module if node.level else want} import"))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if (target := mapped(alias.name)) is not None:
                    old = f"import {alias.name}"
                    new = f"import {target}" + (f" as {alias.name.rsplit('.', 1)[1]}" if alias.asname is None
                                                 and "." not in alias.name else "")
                    edits.append((node.lineno - 1, old, new))
    for index, old, new in edits:
        line = lines[index]
        pattern = re.escape(old).replace(r"\ ", r"\s+") + r"(?![\w.])"
        lines[index] = re.sub(pattern, new, line, count=1)
    return "".join(lines)


# -- step 3: mentions ------------------------------------------------------------------------------

def mention_rules() -> list[tuple[re.Pattern, str]]:
    rules = []
    for old, new in sorted(MOVES.items(), key=lambda kv: -len(kv[0])):
        old_path, new_path = old.replace(".", "/") + ".py", new.replace(".", "/") + ".py"
        rules.append((re.compile(r"(?<![\w/.])" + re.escape(old_path) + r"(?!\w)"), new_path))
        follow = r"(?=\.[A-Za-z_])" if old.rsplit(".", 1)[1] in FUNCTION_NAMED else r"(?![\w])"
        rules.append((re.compile(r"(?<![\w.])" + re.escape(old) + follow), new))
        # a module's name as a whole string: sys.modules["composer.train.evaluate"]
        rules.append((re.compile(r"(?<=[\"'])" + re.escape(old) + r"(?=[\"'])"), new))
        # an import spelled inside a string (a subprocess's code): `from composer.check import analytic`
        rules.append((re.compile(r"(?<=\bfrom )" + re.escape(old) + r"(?= import\b)"), new))
        rules.append((re.compile(r"(?<=\bimport )" + re.escape(old) + r"(?=[ \n;'\"]|$)"), new))
    return rules


def rewrite_mentions(text: str, rules) -> str:
    for pattern, new in rules:
        text = pattern.sub(new, text)
    return text


def files() -> list[Path]:
    found = []
    for d in CODE_DIRS:
        found += [p for p in (ROOT / d).rglob("*.py") if ".venv" not in p.parts]
    for d in TEXT_DIRS:
        found += sorted((ROOT / d).rglob("*.md"))
    found += [ROOT / f for f in TEXT_FILES if (ROOT / f).is_file()]
    return [p for p in found if p.resolve() != SELF]


def rewrite(dry: bool) -> list[str]:
    rules = mention_rules()
    changed, paths = [], []
    for file in files():
        text = file.read_text(encoding="utf-8")
        new = rewrite_imports(file, text) if file.suffix == ".py" else text
        new = rewrite_mentions(new, rules)
        if new != text:
            changed.append(f"rewrite {file.relative_to(ROOT)}")
            paths.append(str(file.relative_to(ROOT)))
            if not dry:
                file.write_text(new, encoding="utf-8")
    if paths and not dry:
        git("add", "--", *paths)
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only list what would change; exit 1 if anything would")
    parser.add_argument("--commit", action="store_true", help="commit the renames, then the rewrites, separately")
    opts = parser.parse_args()
    if opts.check:
        todo = move(dry=True)
        if not todo:
            todo = rewrite(dry=True)
        else:
            todo.append("(imports and mentions are rewritten after the moves)")
        print("\n".join(todo) or "the layout is current")
        return 1 if todo else 0
    moved = move(dry=False)
    print("\n".join(moved))
    if opts.commit and moved:
        git("commit", "-q", "-m", "Move modules into the packages of the pipeline (pure renames; tools/layout.py)")
    rewritten = rewrite(dry=False)
    print("\n".join(rewritten))
    if opts.commit and rewritten:
        git("commit", "-q", "-m", "Imports and mentions follow the moved modules (tools/layout.py)")
    if not moved and not rewritten:
        print("the layout is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
