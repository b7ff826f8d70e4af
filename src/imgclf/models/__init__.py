"""The model registry: ``@register_model`` over a builder ``(input_shape, num_classes, **options)
-> keras.Model``. Every model takes raw pixel values in [0, 255] and does its own preprocessing,
so the data pipeline, transfer learning and evaluation treat all models alike."""

from __future__ import annotations

from typing import Callable

from imgclf.errors import PipelineError

MODELS: dict[str, Callable] = {}


def register_model(func: Callable) -> Callable:
    if func.__name__ in MODELS:
        raise ValueError(f"model {func.__name__!r} registered twice")
    MODELS[func.__name__] = func
    return func


def build(name: str, input_shape: tuple[int, int, int], num_classes: int, family: str | None = None, **options):
    """Build a registered model; ``family`` (the module defining it, e.g. "alexnet") imports that
    module only, so a run loads exactly the code its stage depends on (imgclf.stages.code_deps)."""
    if family:
        import importlib

        importlib.import_module(f"imgclf.models.{family}")
    else:
        _load_families()
    try:
        builder = MODELS[name]
    except KeyError:
        raise PipelineError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None
    return builder(input_shape, num_classes, **options)


def names() -> list[str]:
    _load_families()
    return sorted(MODELS)


def _load_families() -> None:
    from imgclf.models import alexnet, cifar_cnn, densenet, seed_cnn  # noqa: F401  (registration)
