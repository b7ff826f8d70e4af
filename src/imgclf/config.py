"""params.yaml: one JSON Schema (built here, dumped to workflow/schemas/) validates it for the
CLI and for Snakemake alike, fills defaults, and names the offending key on error."""

import copy
import io
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from imgclf import datasets, experiments, paths
from imgclf.errors import PipelineError
from imgclf.overrides import apply_overrides, format_override

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where PyYAML has it: parsed on every stage start
RESIZE_FILTERS = ["nearest", "box", "bilinear", "hamming", "bicubic", "lanczos"]
NAME_PATTERN = "^[a-z][a-z0-9_]*$"
LAYOUT_OPTIONS = sorted({key for layout in datasets.LAYOUTS.values() for key in layout.options})


def _prop(schema_type, description, default=None, **extra) -> dict:
    prop = {"type": schema_type, "description": description, **extra}
    if default is not None or "null" in (schema_type if isinstance(schema_type, list) else [schema_type]):
        prop["default"] = default
    return prop


def source_schema() -> dict:
    return {
        "type": "object",
        "description": "a named source of images: an archive at a URL (http(s):// or file:) or a local path, with "
                       "its MD5 and size, or a class-per-folder image tree at a local path; and its layout",
        "additionalProperties": False, "required": ["layout"],
        "properties": {
            "url": _prop("string", "http(s):// or file: URL of the archive", pattern="^(https?|file):"),
            "path": _prop("string", "local path of the archive, or of the folder (layout 'folder'; 'mnist_idx' without md5); "
                          "both engines pass it in double quotes, so it may hold spaces but no \", $, ` or \\",
                          pattern='^[^"$`\\\\\n\r]+$'),
            "md5": _prop("string", "expected MD5 of the archive", pattern="^[0-9a-f]{32}$"),
            "size": _prop("integer", "expected size of the archive in bytes", minimum=1),
            "classes": {"type": "array", "items": {"type": "string", "pattern": "^[^\t\n\r]+$"}, "uniqueItems": True,
                        "description": "mnist_idx: the class names, one per label number (none: the label numbers)"},
            "prefix": _prop("string", "mnist_idx: what the IDX file names start with (EMNIST: 'emnist-balanced-')"),
            "idx_md5": {"type": "object", "additionalProperties": False, "description":
                        "mnist_idx: the MD5 of each file's decompressed IDX bytes (a gzipped and a plain copy pass alike)",
                        "properties": {role: _prop("string", f"MD5 of the {role.replace('_', ' ')} file", pattern="^[0-9a-f]{32}$")
                                       for role in ("train_images", "train_labels", "test_images", "test_labels")}},
            "layout": _prop("string", "how the source is laid out: " + "; ".join(
                f"'{name}': {layout.text}" for name, layout in datasets.LAYOUTS.items()), enum=list(datasets.LAYOUTS)),
        },
    }


def dataset_schema(dataset: datasets.DataSet) -> dict:
    extra = {key: ({"type": kind, "description": text, "default": default, **more} if kind == "array"
                   else _prop(kind, text, default, **more))
             for key, (kind, text, default, more) in dataset.params.items()}
    source = _prop("string", f"the name in data.sources it is prepared from (layout: {' or '.join(dataset.layouts)})",
                   dataset.default_source, pattern=NAME_PATTERN)
    return {"type": "object", "description": f"the {dataset.name} data set", "additionalProperties": False,
            "default": {}, "properties": {"source": source, **extra}}


def data_schema() -> dict:
    return {
        "type": "object", "description": "Data sets: where they come from and how they are prepared.",
        "additionalProperties": False, "default": {},
        "properties": {
            "sources": {
                "type": "object",
                "description": "named sources; each data set names the one it is prepared from (data.<dataset>.source). "
                               "Built in (an entry of the same name replaces one): "
                               f"{', '.join(datasets.BUILTIN_SOURCES)}",
                "propertyNames": {"pattern": NAME_PATTERN},
                "additionalProperties": {"$ref": "#/$defs/source"},
                "default": {},
            },
            "image_size": _prop("integer", "side of the square images the prepare stages write", 32, minimum=8, maximum=512),
            "resize_filter": _prop("string", "PIL filter used to resize", "box", enum=RESIZE_FILTERS),
            "jpeg_draft": _prop("boolean", "let the JPEG decoder scale down by 1/2, 1/4 or 1/8 (DCT scaling) "
                                "before the filter: much faster", True),
            "val_fraction": _prop("number", "fraction of the training split carved out (stratified) as validation",
                                  0.1, exclusiveMinimum=0, exclusiveMaximum=0.5),
            "split_seed": _prop("integer", "seed of the stratified validation carve", 0, minimum=0),
            "max_image_bytes": _prop("integer", "largest image file prepare reads (a zip member is checked by the "
                                     "size it declares, before it is inflated)", 64 << 20, minimum=1024),
            "download_deadline_s": _prop("integer", "seconds a download may take in all (a dropped connection is "
                                         "resumed within them; the part kept is resumed by the next run)", 7200,
                                         minimum=1),
            **{name: dataset_schema(dataset) for name, dataset in datasets.DATASETS.items()},
        },
    }


def params_schema() -> dict:
    names = list(experiments.EXPERIMENTS)
    properties = {
        "experiments": {
            "type": "array",
            "description": "the experiments to run, train, evaluate and report (any order; run in registry order). "
                           "An experiment that starts from another's model needs that one selected too",
            "items": {"enum": names}, "minItems": 1, "uniqueItems": True, "default": names,
        },
        "data": data_schema(),
    }
    # the keys every experiment has are defined once, in $defs; each experiment's section refers to
    # them and gives its own default
    defs = {"source": source_schema(),
            **{key: {**param.schema, "description": param.description} for key, param in experiments.COMMON.items()}}
    for name, experiment in experiments.EXPERIMENTS.items():
        section = experiments.experiment_schema(experiment)
        for key, prop in section["properties"].items():
            if key in experiments.COMMON and {k: v for k, v in prop.items() if k != "default"} == defs[key]:
                section["properties"][key] = {"$ref": f"#/$defs/{key}", "default": prop["default"]}
        properties[name] = section
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "title": "imgclf params.yaml",
        "description": "Every knob of the pipeline. Generated by `imgclf schema`; do not edit by hand.",
        "type": "object", "additionalProperties": False, "properties": properties, "$defs": defs,
    }


def schema_json() -> str:
    return json.dumps(params_schema(), indent=2) + "\n"


def _fill_defaults(instance: dict, schema: dict) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(instance[key], sub)


def _check_schema(validator: jsonschema.Draft202012Validator, params: dict, origin: str) -> None:
    error = jsonschema.exceptions.best_match(validator.iter_errors(params))
    if error is None:
        return
    where = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        raise PipelineError(f"{origin}: {where}: unknown key {', '.join(map(repr, extra))}")
    raise PipelineError(f"{origin}: {where}: {error.message}")


def validate(params: Any, origin: str = paths.PARAMS_FILE) -> dict:
    """Validate a params mapping, fill defaults, and return the completed copy."""
    if not isinstance(params, dict):
        raise PipelineError(f"{origin}: expected a mapping at the top level")
    schema = params_schema()
    validator = jsonschema.Draft202012Validator(schema)
    _check_schema(validator, params, origin)
    params = copy.deepcopy(params)
    data = params.setdefault("data", {})
    data["sources"] = {**copy.deepcopy(datasets.BUILTIN_SOURCES), **data.get("sources", {})}
    for entry in data["sources"].values():  # the keys its layout reads, defaults filled
        for key, default in datasets.LAYOUTS[entry["layout"]].options.items():
            entry.setdefault(key, copy.deepcopy(default))
    _fill_defaults(params, schema)
    _check_schema(validator, params, origin)  # the filled-in defaults too
    _check_consistency(params, origin)
    return params


def _check_sources(data: dict, used: set, origin: str) -> None:
    """Each source is complete, and each data set the selected experiments use names one of a layout it reads."""
    for name, entry in data["sources"].items():
        where = f"{origin}: data.sources.{name}"
        if ("url" in entry) == ("path" in entry):
            raise PipelineError(f"{where}: give either url or path")
        layout = datasets.LAYOUTS[entry["layout"]]
        folder = "path" in entry and "md5" not in entry and "size" not in entry
        if layout.suffix is None and not folder:
            raise PipelineError(f"{where}: a folder source has a path, and no md5 or size")
        if layout.suffix is not None and not (layout.folder and folder) and ("md5" not in entry or "size" not in entry):
            raise PipelineError(f"{where}: an archive source needs md5 and size (to verify what is downloaded)"
                                + (", a folder a path and neither" if layout.folder else ""))
        if unread := [key for key in LAYOUT_OPTIONS if key in entry and key not in layout.options]:
            raise PipelineError(f"{where}.{unread[0]}: layout {entry['layout']!r} does not read it")
    for dataset in [key for key in datasets.DATASETS if key in used]:
        name, layouts = data[dataset]["source"], datasets.DATASETS[dataset].layouts
        if name not in data["sources"]:
            raise PipelineError(f"{origin}: data.{dataset}.source: {name!r} is not in data.sources "
                                f"(known: {', '.join(sorted(data['sources']))})")
        if data["sources"][name]["layout"] not in layouts:
            raise PipelineError(f"{origin}: data.{dataset}.source: {name!r} has layout "
                                f"{data['sources'][name]['layout']!r}; {dataset} reads {' or '.join(layouts)}")


def _check_consistency(params: dict, origin: str) -> None:
    used = {experiments.EXPERIMENTS[name].dataset for name in params["experiments"]}
    _check_sources(params["data"], used, origin)
    for dataset in datasets.DATASETS:
        subset = params["data"][dataset]
        if subset.get("class_selection") == "list" and len(subset["wnids"]) != subset["n_classes"]:
            raise PipelineError(f"{origin}: data.{dataset}.wnids: lists {len(subset['wnids'])} classes but "
                                f"n_classes is {subset['n_classes']}")
        named = params["data"]["sources"].get(subset["source"], {}).get("classes")  # a source that names its classes
        if named and "n_classes" in subset:
            if unknown := [w for w in subset["wnids"] if w not in named] if subset["class_selection"] == "list" else []:
                raise PipelineError(f"{origin}: data.{dataset}.wnids: {unknown[0]!r} is not one of source "
                                    f"{subset['source']}'s classes")
            if subset["n_classes"] > len(named):
                raise PipelineError(f"{origin}: data.{dataset}.n_classes: {subset['n_classes']} but source "
                                    f"{subset['source']} names {len(named)} classes")
    for name, experiment in experiments.EXPERIMENTS.items():
        experiments.check_params(experiment, params[name], f"{origin}: {name}")
    for name in params["experiments"]:
        upstream = experiments.EXPERIMENTS[name].upstream
        if upstream and upstream not in params["experiments"]:
            raise PipelineError(f"{origin}: experiments: {name} starts from {upstream}'s model, "
                                f"which is not selected; add {upstream}")


MAX_VALUES = 1_000_000  # a params file's values with every alias expanded; the largest real one holds a few thousand


def expanded_size(node: yaml.Node | None) -> float:
    """How many nodes the YAML node graph ``node`` (``yaml.compose``) holds once every alias and merge
    key (``<<: [*a, *a]``) is expanded: what constructing or copying it builds. Each distinct node is
    counted once; one that contains itself is endless (``math.inf``)."""
    sizes: dict[int, float] = {}
    open_nodes: set[int] = set()  # on the path from the top: met again, it contains itself

    def size(current: yaml.Node) -> float:
        if id(current) in sizes:
            return sizes[id(current)]
        if id(current) in open_nodes:
            return math.inf
        open_nodes.add(id(current))
        children = ([part for pair in current.value for part in pair] if isinstance(current, yaml.MappingNode)
                    else current.value if isinstance(current, yaml.SequenceNode) else [])
        sizes[id(current)] = 1 + sum(size(child) for child in children)
        open_nodes.discard(id(current))
        return sizes[id(current)]

    return size(node) if node is not None else 0


def read_raw(path: str | Path) -> Any:
    """A params file as written (not validated, no defaults). One whose aliases and merge keys
    expand to more than ``MAX_VALUES`` nodes (a "billion laughs" file) is refused from its node
    graph, before anything is constructed or copied."""
    path = Path(path)
    try:
        loader = _SafeLoader(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: params file not found") from None
    try:
        node = loader.get_single_node()
        size = expanded_size(node)
        if size > MAX_VALUES:
            raise PipelineError(f"{path}: a YAML alias refers to a value that contains it (an endless value)"
                                if size == math.inf else
                                f"{path}: its YAML aliases expand to {size:,} values (at most {MAX_VALUES:,})")
        return loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    finally:
        loader.dispose()


def load(path: str | Path = paths.PARAMS_FILE, overrides: dict | None = None, raw: Any = None) -> dict:
    """Read, complete and validate a params file, with ``overrides`` (dotted key -> value: the
    CLI's ``--set``, Snakemake's ``--config``) applied first, so they pass the same checks.
    ``raw``: the file as ``read_raw`` read it already (Snakemake reads it once for both)."""
    raw = read_raw(path) if raw is None else raw
    if not overrides:
        return validate(raw, str(path))
    origin = f"{path} with overrides {', '.join(format_override(k, v) for k, v in overrides.items())}"
    return validate(apply_overrides(raw, overrides, origin), origin)


# --- profiles: config/<name>.yaml states only what differs from params.yaml (`imgclf params --profile`) ---
PROFILE_DIR = "config"


def profile_path(name: str) -> Path:
    """A profile's file: ``config/<name>.yaml``, or a path given as such."""
    path = Path(name) if "/" in name or name.endswith((".yaml", ".yml")) else Path(PROFILE_DIR) / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in Path(PROFILE_DIR).glob("*.yaml"))
        raise PipelineError(f"--profile {name}: {path} not found (profiles: {', '.join(known) or 'none'})")
    return path


def merge(base: Any, overlay: Any) -> Any:
    """``overlay`` laid over ``base``: mappings merged key by key, anything else (a list too)
    replaced; the rule Snakemake applies to several ``--configfile``."""
    if not (isinstance(base, dict) and isinstance(overlay, dict)):
        return copy.deepcopy(overlay)
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        merged[key] = merge(base.get(key), value)
    return merged


def _lay_over(node, overlay: dict) -> None:
    """``merge`` into a ruamel round-trip mapping: the file's comments and order stay."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    def plain(value):
        if isinstance(value, dict):
            return CommentedMap((key, plain(item)) for key, item in value.items())
        if isinstance(value, list):
            seq = CommentedSeq(plain(item) for item in value)
            seq.fa.set_flow_style()
            return seq
        return value

    def tail(mapping, key):
        """Where the text after ``key``'s entry hangs: on the key, or, for a nested mapping, on
        the last key of its last key's ... mapping."""
        value = mapping[key]
        return tail(value, next(reversed(value))) if isinstance(value, CommentedMap) and len(value) else (mapping, key)

    last = next(reversed(node), None) if len(node) else None
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(node.get(key), dict):
            _lay_over(node[key], value)
        else:
            node[key] = plain(value)
    # a comment or blank line after the section's last entry (nested ones included) stays after the section
    if last is not None and last != next(reversed(node)):
        (owner, key), (new_owner, new_key) = tail(node, last), tail(node, next(reversed(node)))
        if key in owner.ca.items:
            new_owner.ca.items[new_key] = owner.ca.items.pop(key)


def apply_profile(params_path: str | Path, name: str) -> tuple[str, dict]:
    """The text of ``params_path`` with profile ``name`` laid over it, and its params checked and
    completed like any params file's."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap
    overlay_path = profile_path(name)
    overlay = read_raw(overlay_path)
    if not isinstance(overlay, dict):
        raise PipelineError(f"{overlay_path}: expected a mapping at the top level")
    base = read_raw(params_path)  # the one-line errors for a missing or broken file
    if base is not None and not isinstance(base, dict):
        raise PipelineError(f"{params_path}: expected a mapping at the top level")
    round_trip = YAML()
    round_trip.width = 110
    round_trip.representer.add_representer(
        type(None), lambda representer, _: representer.represent_scalar("tag:yaml.org,2002:null", "null"))
    round_trip.representer.add_representer(  # 1.0e-05, not ruamel's 1e-05 (a string to YAML 1.1 readers)
        float, lambda representer, value: representer.represent_scalar("tag:yaml.org,2002:float",
                                                                       yaml.safe_dump(value).split("\n")[0]))
    document = round_trip.load(Path(params_path).read_text()) or CommentedMap()
    _lay_over(document, overlay)
    out = io.StringIO()
    round_trip.dump(document, out)
    note = f"# {overlay_path} laid over this file (`imgclf params --profile {name}`)\n"
    text = out.getvalue() if out.getvalue().startswith(note) else note + out.getvalue()
    merged = yaml.load(text, Loader=_SafeLoader)
    if merged != merge(base or {}, overlay):  # pragma: no cover - ruamel wrote something else
        raise PipelineError(f"{params_path}: could not lay {overlay_path} over it faithfully")
    return text, validate(merged, f"{params_path} with profile {overlay_path}")
