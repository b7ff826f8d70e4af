"""The model registry: ``@register_model`` over a builder ``(input_shape, num_classes, **options)
-> keras.Model``, one module per model family under ``imgclf.models``. Every model takes raw pixel
values in [0, 255] and does its own preprocessing, so the data pipeline, transfer learning and
evaluation treat all models alike.

Which module registers a name is read from the sources (``module_of``), so building a model
imports exactly its own family's module, and a training stage depends on exactly that file."""

import ast
import functools
import importlib
from pathlib import Path
from typing import Callable

from imgclf.errors import PipelineError

MODELS: dict[str, Callable] = {}


def register_model(func: Callable) -> Callable:
    if func.__name__ in MODELS:
        raise ValueError(f"model {func.__name__!r} registered twice")
    MODELS[func.__name__] = func
    return func


@functools.cache
def _registered() -> dict[str, str]:
    """Registered model name -> its module under imgclf.models, from the sources (no import)."""
    found = {}
    for path in sorted(Path(__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef) and any(
                    getattr(d, "id", None) == "register_model" for d in node.decorator_list):
                found[node.name] = path.stem
    return found


def module_of(name: str) -> str:
    """The module under imgclf.models whose ``@register_model`` defines ``name``."""
    try:
        return _registered()[name]
    except KeyError:
        raise PipelineError(f"unknown model {name!r}; known: {', '.join(names())}") from None


def build(name: str, input_shape: tuple[int, int, int], num_classes: int, **options):
    """Build a registered model, importing its family's module only."""
    importlib.import_module(f"imgclf.models.{module_of(name)}")
    return MODELS[name](input_shape, num_classes, **options)


def names() -> list[str]:
    return sorted(_registered())
