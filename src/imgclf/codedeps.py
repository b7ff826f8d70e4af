"""Code dependencies, read from the sources: each stage family depends on the package modules its
command imports, directly or through others, and each stage also on its own model or layout
module. Editing any of them reruns the stage; editing any other file does not.

dvc.yaml spells these lists out per family (tests/test_stages.py checks them against
``families()``); the Snakemake rules take them from here."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from imgclf.paths import PACKAGE

# the command module of each stage family
ENTRIES = {"check_params": "resolved.py", "sample": "sample.py", "download": "download.py", "prepare": None,
           "train": "train.py", "evaluate": "evaluate.py", "report": "report.py"}


def _module_file(dotted: str) -> str | None:
    base = Path(PACKAGE).parent / dotted.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate.as_posix()
    return None


@functools.cache
def imports(path: str) -> tuple[str, ...]:
    """The package files one source file imports (top-level and function-level imports alike;
    not those under ``if TYPE_CHECKING:``, which never run)."""
    tree = ast.parse(Path(path).read_text(), path)
    typing_only = {id(inner) for node in ast.walk(tree)
                   if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
                   for stmt in node.body for inner in ast.walk(stmt)}
    found = []
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
            if dotted.split(".")[0] == "imgclf":
                parts = dotted.split(".")
                for i in range(1, len(parts) + 1):  # importing a.b.c imports a and a.b first
                    if (file := _module_file(".".join(parts[:i]))) and file != path:
                        found.append(file)
    return tuple(sorted(set(found)))


def closure(roots: list[str]) -> list[str]:
    """``roots`` and every package file they import, directly or through others."""
    seen, todo = set(roots), list(roots)
    while todo:
        for file in imports(todo.pop()):
            if file not in seen:
                seen.add(file)
                todo.append(file)
    return sorted(seen)


def model_module(module: str) -> str:
    return f"{PACKAGE}/models/{module}.py"


def layout_module(module: str) -> str:
    return f"{PACKAGE}/sources/{module}.py"


def own_modules(family: str) -> set[str]:
    """The modules that are a stage's own in ``family`` (its ``${item.module}`` in dvc.yaml): the
    model modules for training and evaluation, the layout modules for prepare."""
    from imgclf import datasets, experiments

    if family in ("train", "evaluate"):
        return {model_module(experiment.module) for experiment in experiments.EXPERIMENTS.values()}
    if family == "prepare":
        return {layout_module(layout.module) for layout in datasets.LAYOUTS.values()}
    return set()


@functools.cache
def family(name: str) -> tuple[str, ...]:
    """The modules every stage of a family depends on: its command module's closure, with what its
    own modules import (a shared layer, a zip reader) but not the own modules themselves."""
    own = own_modules(name)
    roots = [f"{PACKAGE}/{ENTRIES[name]}"] if ENTRIES[name] else []
    return tuple(file for file in closure([*roots, *sorted(own)]) if file not in own)


def families() -> dict[str, list[str]]:
    return {name: list(family(name)) for name in ENTRIES}
