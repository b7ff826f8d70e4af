"""Code dependencies, read from the sources: each stage family depends on the package modules its
command imports, directly or through others, and each stage also on its own model or layout
module. Editing any of them reruns the stage; editing any other file does not.

dvc.yaml spells these lists out per family (tests/test_stages.py checks them against ``family``);
the Snakemake rules take them from here."""

import ast
import functools
from pathlib import Path

from imgclf.paths import PACKAGE

# the modules each stage family's command runs (check-params: validation and the resolved files;
# prepare: its layout's module only, each stage's own)
ENTRIES = {"check_params": ("config.py", "resolved.py"), "sample": ("sample.py",), "download": ("download.py",),
           "prepare": (), "train": ("train.py",), "evaluate": ("evaluate.py",), "report": ("report.py",)}


def _module_file(dotted: str) -> str | None:
    base = Path(PACKAGE).parent / dotted.replace(".", "/")
    return next((file.as_posix() for file in (base.with_suffix(".py"), base / "__init__.py") if file.is_file()), None)


@functools.cache
def imports(path: str) -> tuple[str, ...]:
    """The package files one source file imports (top-level and function-level imports alike;
    not those under ``if TYPE_CHECKING:``, which never run)."""
    tree = ast.parse(Path(path).read_text(), path)
    typing_only = {id(inner) for node in ast.walk(tree)
                   if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
                   for stmt in node.body for inner in ast.walk(stmt)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from imgclf.models import layers`` names a module; ``... import register_model`` a name
            modules = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for dotted in modules:
            parts = dotted.split(".")
            if parts[0] == "imgclf":  # importing a.b.c imports a and a.b first
                found.update(_module_file(".".join(parts[:i])) for i in range(1, len(parts) + 1))
    return tuple(sorted(found - {None, path}))


def closure(roots: list[str]) -> list[str]:
    """``roots`` and every package file they import, directly or through others."""
    seen, todo = set(roots), list(roots)
    while todo:
        new = set(imports(todo.pop())) - seen
        seen |= new
        todo.extend(new)
    return sorted(seen)


def model_module(module: str) -> str:
    return f"{PACKAGE}/models/{module}.py"


def layout_module(module: str) -> str:
    return f"{PACKAGE}/sources/{module}.py"


@functools.cache
def family(name: str, own: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """The modules every stage of family ``name`` depends on: its command module's closure, with
    what its ``own`` modules (each stage's model or layout module) import, such as a shared layer
    or the zip reader, but not the own modules themselves."""
    roots = [f"{PACKAGE}/{module}" for module in ENTRIES[name]]
    return tuple(file for file in closure([*roots, *sorted(own)]) if file not in own)
