"""params.yaml: one JSON Schema (built here, dumped to workflow/schemas/) validates it for the
CLI and for Snakemake alike, fills defaults, and names the offending key on error."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from imgclf import experiments
from imgclf.errors import PipelineError

DEFAULT_PARAMS = "params.yaml"
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where PyYAML has it: parsed on every stage start
RESIZE_FILTERS = ["nearest", "box", "bilinear", "hamming", "bicubic", "lanczos"]


def _prop(schema_type, description, default=None, **extra) -> dict:
    prop = {"type": schema_type, "description": description, **extra}
    if default is not None or "null" in (schema_type if isinstance(schema_type, list) else [schema_type]):
        prop["default"] = default
    return prop


def _source_schema(description: str, default: dict | None) -> dict:
    schema = {
        "type": "object",
        "description": description,
        "additionalProperties": False,
        "required": ["url", "md5", "size"],
        "properties": {
            "url": _prop("string", "http(s):// or file: URL of the archive", pattern="^(https?|file):"),
            "md5": _prop("string", "expected MD5 of the archive", pattern="^[0-9a-f]{32}$"),
            "size": _prop("integer", "expected size of the archive in bytes", minimum=1),
        },
    }
    if default is not None:
        schema["default"] = default
    return schema


DATASET_ARCHIVES = ("tiny_imagenet", "cifar10")
OFFICIAL_SOURCES = {
    "tiny_imagenet": {
        "url": "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
        "md5": "90528d7ca1a48142e341f4ef8d21d0de",
        "size": 248100043,
    },
    "cifar10": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        "md5": "c32a1d4ab5d03f1284b67883e8d87530",
        "size": 170052171,
    },
}


def data_schema() -> dict:
    def source_set(name: str, description: str, defaults: dict | None) -> dict:
        schema = {
            "type": "object",
            "description": description,
            "additionalProperties": False,
            "required": list(DATASET_ARCHIVES),
            "properties": {
                key: _source_schema(f"{name} {key} archive", None if defaults is None else defaults[key])
                for key in DATASET_ARCHIVES
            },
        }
        if defaults is not None:
            schema["default"] = defaults
        return schema

    return {
        "type": "object",
        "description": "Data sets: where they come from and how they are prepared.",
        "additionalProperties": False,
        "default": {},
        "properties": {
            "source": _prop(
                "string",
                "which archive set the download stage fetches: the embedded sample or the official data sets",
                "sample",
                enum=["sample", "official"],
            ),
            "sources": {
                "type": "object",
                "description": "URL, MD5 and size of every archive, per source",
                "additionalProperties": False,
                "required": ["sample"],
                "properties": {
                    "official": source_set("official", "the real data sets", OFFICIAL_SOURCES),
                    "sample": source_set("sample", "the embedded, generated sample", None),
                },
            },
            "image_size": _prop("integer", "side of the square images the prepare stages write", 32, minimum=8, maximum=512),
            "resize_filter": _prop("string", "PIL filter used to resize", "box", enum=RESIZE_FILTERS),
            "jpeg_draft": _prop(
                "boolean",
                "let the JPEG decoder scale down by 1/2, 1/4 or 1/8 (DCT scaling) before the filter: much faster",
                True,
            ),
            "val_fraction": _prop(
                "number", "fraction of the training split carved out (stratified) as validation", 0.1,
                exclusiveMinimum=0, exclusiveMaximum=0.5,
            ),
            "split_seed": _prop("integer", "seed of the stratified validation carve", 0, minimum=0),
            "max_image_bytes": _prop("integer", "largest image file prepare reads (a zip member is checked by the "
                                     "size it declares, before it is inflated)", 64 << 20, minimum=1024),
            "download_deadline_s": _prop("integer", "seconds a download may take in all (a dropped connection is "
                                         "resumed within them; the part kept is resumed by the next run)", 7200,
                                         minimum=1),
            "imagenet200": {
                "type": "object",
                "description": "the 200-class ImageNet subset (from Tiny ImageNet or an image folder)",
                "additionalProperties": False,
                "default": {},
                "properties": {
                    "n_classes": _prop("integer", "number of classes kept", 200, minimum=2),
                    "class_selection": _prop(
                        "string", "'seeded': a seeded draw from the source's classes; 'list': exactly `wnids`",
                        "seeded", enum=["seeded", "list"],
                    ),
                    "class_seed": _prop("integer", "seed of the class draw", 0, minimum=0),
                    "wnids": {
                        "type": "array", "items": {"type": "string"}, "default": [], "uniqueItems": True,
                        "description": "explicit class list, used when class_selection is 'list'",
                    },
                    "image_folder": _prop(
                        ["string", "null"],
                        "optional class-per-folder image tree (e.g. ImageNet train/ + val/) used instead of the "
                        "Tiny ImageNet archive",
                        None,
                    ),
                    "test_fraction": _prop(
                        "number", "for an image folder without val/: stratified fraction held out as test", 0.1,
                        exclusiveMinimum=0, exclusiveMaximum=0.5,
                    ),
                },
            },
        },
    }


def params_schema() -> dict:
    names = list(experiments.EXPERIMENTS)
    properties = {
        "experiments": {
            "type": "array",
            "description": "the experiments to run, train, evaluate and report (any order; run in registry order). "
                           "An experiment that starts from another's model needs that one selected too",
            "items": {"enum": names},
            "minItems": 1,
            "uniqueItems": True,
            "default": names,
        },
        "data": data_schema(),
    }
    for name, experiment in experiments.EXPERIMENTS.items():
        properties[name] = experiments.experiment_schema(experiment)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "imgclf params.yaml",
        "description": "Every knob of the pipeline. Generated by `imgclf schema`; do not edit by hand.",
        "type": "object",
        "additionalProperties": False,
        "required": ["data"],
        "properties": properties,
    }


def schema_json() -> str:
    return json.dumps(params_schema(), indent=2) + "\n"


def _fill_defaults(instance: dict, schema: dict) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(instance[key], sub)


def _error_line(error: jsonschema.ValidationError, origin: str) -> str:
    where = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f"{origin}: {where}: unknown key {', '.join(map(repr, extra))}"
    return f"{origin}: {where}: {error.message}"


def validate(params: Any, origin: str = DEFAULT_PARAMS) -> dict:
    """Validate a params mapping, fill defaults, and return the completed copy."""
    if not isinstance(params, dict):
        raise PipelineError(f"{origin}: expected a mapping at the top level")
    schema = params_schema()
    validator = jsonschema.Draft202012Validator(schema)
    for phase in ("given", "filled"):
        error = jsonschema.exceptions.best_match(validator.iter_errors(params))
        if error is not None:
            raise PipelineError(_error_line(error, origin))
        if phase == "given":
            params = copy.deepcopy(params)
            _fill_defaults(params, schema)
    _check_consistency(params, origin)
    return params


def _check_consistency(params: dict, origin: str) -> None:
    subset = params["data"]["imagenet200"]
    if subset["class_selection"] == "list":
        if len(subset["wnids"]) != subset["n_classes"]:
            raise PipelineError(
                f"{origin}: data.imagenet200.wnids: lists {len(subset['wnids'])} classes but "
                f"n_classes is {subset['n_classes']}"
            )
    for name, experiment in experiments.EXPERIMENTS.items():
        experiments.check_params(experiment, params[name], f"{origin}: {name}")
    chosen = params["experiments"]
    for name in chosen:
        upstream = experiments.EXPERIMENTS[name].upstream
        if upstream and upstream not in chosen:
            raise PipelineError(f"{origin}: experiments: {name} starts from {upstream}'s model, "
                                f"which is not selected; add {upstream}")


def read_raw(path: str | Path) -> Any:
    """A params file as written (not validated, no defaults)."""
    path = Path(path)
    try:
        return yaml.load(path.read_text(), Loader=_SafeLoader)
    except FileNotFoundError:
        raise PipelineError(f"{path}: params file not found") from None
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


def load(path: str | Path = DEFAULT_PARAMS, overrides: dict | None = None) -> dict:
    """Read, complete and validate a params file, with ``overrides`` (dotted key -> value: the
    CLI's ``--set``, Snakemake's ``--config``) applied first, so they pass the same checks."""
    return load_raw(read_raw(path), path, overrides)


def load_raw(raw: Any, path: str | Path, overrides: dict | None = None) -> dict:
    """``load`` for a params file already read (``read_raw``): Snakemake reads it once for both."""
    if not overrides:
        return validate(raw, str(path))
    origin = f"{path} with overrides {', '.join(format_override(k, v) for k, v in overrides.items())}"
    return validate(apply_overrides(raw, overrides, origin), origin)


# --- overrides: `imgclf <stage> --set seed_cnn.epochs=3`, `snakemake --config 'seed_cnn={epochs: 3}'` ---


def apply_overrides(raw: Any, overrides: dict, origin: str) -> Any:
    """A copy of ``raw`` with each dotted key set to its value (sections created as needed)."""
    result = copy.deepcopy(raw)
    for key, value in overrides.items():
        node = result
        parts = key.split(".")
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
            overrides[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise PipelineError(f"--set {item}: the value is not valid YAML") from None
    return overrides


def format_override(key: str, value: Any) -> str:
    """``key=value`` that parse_sets reads back to the same value (YAML flow style)."""
    text = value if isinstance(value, str) and yaml.safe_load(value) == value else json.dumps(value)
    return f"{key}={text}"


def snakemake_overrides(given: dict, raw_file: Any) -> dict:
    """Snakemake's ``--config`` entries (nested, every scalar a string: it parses values with
    YAML's base loader) -> {dotted key: typed value}. A string is read as YAML unless the file's
    value there is a string too (``optimizer=sgd`` stays "sgd", ``epochs=3`` becomes 3)."""

    def typed(value, current):
        if isinstance(value, str):
            if isinstance(current, str):
                return value
            return yaml.safe_load(value) if value.strip() else None
        if isinstance(value, list):
            return [typed(item, None) for item in value]
        return value

    def walk(node, current, prefix):
        for key, value in node.items():
            here = current.get(key) if isinstance(current, dict) else None
            if isinstance(value, dict) and value:
                yield from walk(value, here, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", typed(value, here)

    return dict(walk(given or {}, raw_file, ""))


def source_entry(params: dict, dataset: str) -> dict:
    """URL, md5 and size of ``dataset`` ('tiny_imagenet' or 'cifar10') for the chosen source."""
    data = params["data"]
    return data["sources"][data["source"]][dataset]
