"""Overrides of params.yaml: ``imgclf <stage> --set seed_cnn.epochs=3``, and Snakemake's
``--configfile``/``--config`` (what its ``config`` holds that differs from params.yaml), as
{dotted key: value}; ``config.load`` applies them before validating."""

import copy
from typing import Any

import yaml

from imgclf.errors import PipelineError


def apply_overrides(raw: Any, overrides: dict, origin: str) -> Any:
    """A copy of ``raw`` with each dotted key set to its value (sections created as needed)."""
    result = copy.deepcopy(raw)
    for key, value in overrides.items():
        node, parts = result, key.split(".")
        for part in parts[:-1]:
            if not isinstance(node, dict):
                break
            node = node.setdefault(part, {})
        if not isinstance(node, dict) or not all(parts):
            raise PipelineError(f"{origin}: {key}: not a key of a params section")
        node[parts[-1]] = copy.deepcopy(value)
    return result


def parse_sets(items: list[str] | None) -> dict:
    """``KEY=VALUE`` strings (the CLI's ``--set``) -> {dotted key: value parsed as YAML}."""
    overrides = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise PipelineError(f"--set {item}: expected KEY=VALUE, e.g. --set seed_cnn.epochs=3")
        try:
            overrides[key.strip()] = yaml.safe_load(text)  # empty: null
        except yaml.YAMLError:
            raise PipelineError(f"--set {item}: the value is not valid YAML") from None
    return overrides


def format_override(key: str, value: Any) -> str:
    """``key=value`` that parse_sets reads back to the same value (YAML flow style)."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=float("inf"))
    return f"{key}={text.removesuffix(chr(10)).removesuffix(chr(10) + '...')}"


def config_overrides(config: dict, raw_file: Any) -> dict:
    """Snakemake's ``config`` (params.yaml, any ``--configfile`` laid over it, ``--config`` on top)
    as overrides of params.yaml: {dotted key: typed value} for each value that differs. Snakemake
    reads ``--config`` scalars as strings (YAML's base loader): a string is read as YAML unless
    params.yaml's value there is a string too (``optimizer=sgd`` stays "sgd", ``epochs=3`` is 3)."""

    def typed(value, current):
        if isinstance(value, str) and not isinstance(current, str):
            return yaml.safe_load(value)  # empty: null
        if isinstance(value, list):
            return [typed(item, None) for item in value]
        return value

    def walk(node, current, prefix):
        for key, value in node.items():
            here = current.get(key) if isinstance(current, dict) else None
            if isinstance(value, dict) and value and (here is None or isinstance(here, dict)):
                yield from walk(value, here, f"{prefix}{key}.")
            elif not (isinstance(current, dict) and key in current and typed(value, here) == here):
                yield f"{prefix}{key}", typed(value, here)

    return dict(walk(config or {}, raw_file, ""))
