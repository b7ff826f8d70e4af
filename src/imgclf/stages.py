"""The stage table: paths, commands, dependencies and params of every stage, derived from the
experiment registry. ``dvc.yaml`` is generated from it (``imgclf dvc-yaml``) and the Snakemake
rules call the same functions, so both engines run the same commands on the same files."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from imgclf import experiments, sources

PARAMS_FILE = "params.yaml"
# the embedded sample's archives (``imgclf make-sample KIND``), and the layout each is in
ARCHIVES = {"tiny_imagenet": "tiny-imagenet-200.zip", "cifar10": "cifar-10-binary.tar.gz"}
SAMPLE_LAYOUT = {"tiny_imagenet": "tiny_imagenet_zip", "cifar10": "cifar10_binary"}
PACKAGE = "src/imgclf"


@functools.lru_cache(maxsize=None)
def _imports(path: str) -> tuple[str, ...]:
    """The package files one source file imports (top-level and function-level imports alike)."""
    import ast
    from pathlib import Path

    def module_file(dotted: str) -> str | None:
        base = Path(PACKAGE).parent / dotted.replace(".", "/")
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate.as_posix()
        return None

    found = []
    for node in ast.walk(ast.parse(Path(path).read_text(), path)):
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
                    if (file := module_file(".".join(parts[:i]))) and file != path:
                        found.append(file)
    return tuple(sorted(set(found)))


def code_deps(module: str, family: str | None = None) -> list[str]:
    return list(_code_deps(module, family))


@functools.lru_cache(maxsize=None)  # the stage table is built several times per engine start
def _code_deps(module: str, family: str | None) -> tuple[str, ...]:
    """Every package file a stage's module imports, directly or through others, read from the
    sources: editing any of them reruns the stage, editing any other file does not. Model family
    modules (the experiments' ``model_source``) other than ``family`` are left out: the model
    registry imports them all (and train/evaluate import the AutoKeras and transfer modules where
    the experiment's kind needs them), but a run builds only its own experiment's model."""
    families = {f"{PACKAGE}/models/{e.model_source}" for e in experiments.EXPERIMENTS.values()}
    roots = [f"{PACKAGE}/{module}", *([f"{PACKAGE}/models/{family}"] if family else [])]
    seen, todo = set(roots), list(roots)
    while todo:
        current = todo.pop()
        for file in _imports(current):
            # a family is reached only from a family (transfer builds on densenet), never from the registry
            if file not in seen and (file not in families or current in families):
                seen.add(file)
                todo.append(file)
    return tuple(sorted(seen))


def sample_archive(kind: str) -> str:
    return f"data/sample/{ARCHIVES[kind]}"


def sample_kind(entry: dict) -> str | None:
    """The embedded sample a source entry points at (its url or path is the sample's file), or
    None: the sample is generated only for the data sets whose source it is."""
    where = entry.get("path") or entry.get("url", "").removeprefix("file:")
    return next((kind for kind in ARCHIVES
                 if where == sample_archive(kind) and entry["layout"] == SAMPLE_LAYOUT[kind]), None)


def raw_archive(dataset: str, layout: str) -> str:
    """Where the download stage puts ``dataset``'s archive."""
    return f"data/raw/{dataset}{sources.ARCHIVE_SUFFIX[layout]}"


def prepared(dataset: str) -> str:
    return f"data/prepared/{dataset}"


def model_dir(name: str, seed: int) -> str:
    return f"models/{name}/seed{seed}"


def live_dir(name: str, seed: int) -> str:
    """The run's DVCLive directory (in git: ``dvc exp show``, ``dvc plots`` read it, in any clone)."""
    return f"reports/live/{name}/seed{seed}"


def live_metric(name: str, seed: int, metric: str) -> str:
    return f"{live_dir(name, seed)}/plots/metrics/{metric}.tsv"


def tensorboard_dir(name: str, seed: int) -> str:
    """The run's TensorBoard events (``tensorboard --logdir logs/tensorboard``); not a stage output."""
    return f"logs/tensorboard/{name}/seed{seed}"


def metrics_file(name: str, seed: int) -> str:
    return f"reports/metrics/{name}/seed{seed}.json"


def eval_dir(name: str, seed: int) -> str:
    return f"reports/eval/{name}/seed{seed}"


def confusion_file(name: str, seed: int) -> str:
    return f"{eval_dir(name, seed)}/confusion.csv"


def runs(params: dict) -> list[tuple[str, int]]:
    """Every (experiment, seed) training run that params ask for, in registry order."""
    return [(name, seed) for name in experiments.selected(params) for seed in params[name]["seeds"]]


def datasets(params: dict) -> list[str]:
    """The data sets the selected experiments train on, in registry order (``sources.DATASETS``)."""
    used = {experiments.EXPERIMENTS[name].dataset for name in experiments.selected(params)}
    return [dataset for dataset in sources.DATASETS if dataset in used]


def run_stage(kind: str, name: str, seed: int) -> str:
    return f"{kind}_{name}_s{seed}"


REPORT_OUTS = ["reports/results.md", "reports/results.csv", "reports/figures"]
# dvc.yaml's first stage: params.yaml is checked before any stage deletes an output, and every
# param is written out with its value, defaults included, one JSON file per params.yaml section:
# these are the params files the stages list in dvc.yaml. So a stage lists exactly the params it
# reads, whether params.yaml states them or leaves them to their defaults, and a changed default
# reruns exactly the stages that read it. The stamp never changes: ordering only. Snakemake checks
# params.yaml when it parses the Snakefile, before any job, and tracks the same values itself.
CHECK_STAGE = "check_params"
PARAMS_STAMP = "config/params.checked"  # committed: constant bytes, so a fresh clone is up to date
STAMP_TEXT = "# written by `imgclf check-params --stamp` after params.yaml passed; these bytes never change\n"
RESOLVED_DIR = "config/resolved"  # committed, like dvc.lock: the values the committed results used


def resolved_file(key: str, resolved_dir: str = RESOLVED_DIR) -> str:
    """The file of check_params' output that holds a (dotted) param: its section's.

    One small file per section, not one for all: DVC reads a stage's params file and walks the
    whole document for each listed key, so 45 stages x 480 keys over one file cost a second."""
    return f"{resolved_dir}/{key.split('.')[0]}.json"


def resolved_texts(params: dict, resolved_dir: str = RESOLVED_DIR) -> dict[str, str]:
    """Every section of validated params (defaults filled in), as the file that holds it."""
    import json

    return {resolved_file(key, resolved_dir): json.dumps({key: value}, indent=2, sort_keys=True) + "\n"
            for key, value in params.items()}


def write_checked(params: dict, stamp: str = PARAMS_STAMP, resolved_dir: str = RESOLVED_DIR) -> None:
    """check_params' outputs for validated params: the stamp and the resolved sections. Each is
    written only when its bytes differ: no needless new file time."""
    from pathlib import Path

    from imgclf.io_utils import write_text

    for path, text in {stamp: STAMP_TEXT, **resolved_texts(params, resolved_dir)}.items():
        if not Path(path).exists() or Path(path).read_text() != text:
            write_text(path, text)


IMAGENET200_KEYS = ("n_classes", "class_selection", "class_seed", "wnids", "test_fraction")


def data_params(dataset: str) -> list[str]:
    """What prepare reads besides its source (a dependency itself: the archive, or the folder)."""
    common = ["data.image_size", "data.resize_filter", "data.val_fraction", "data.split_seed"]
    if dataset == "imagenet200":
        return common + ["data.jpeg_draft", *(f"data.imagenet200.{key}" for key in IMAGENET200_KEYS)]
    return common


def download_params(dataset: str, params: dict) -> list[str]:
    """The data set's choice of source, and that source's entry (URL or path, MD5, size, layout)."""
    name = params["data"][dataset]["source"]
    return [f"data.{dataset}.source", f"data.sources.{name}"]


@dataclass
class Stage:
    """One stage, as both engines run it: the ``imgclf`` command with its explicit paths
    (``command``), then the params file and any overrides (``settings``); what it reads (``deps``:
    data, and the package modules in ``code``) and writes."""

    name: str
    command: list[str]  # after `imgclf`: the subcommand and its arguments
    deps: list[str]
    outs: list[str]  # cached by DVC (pushed to and pulled from a remote)
    params: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)  # in git: numbers to compare in any clone
    git_outs: list[str] = field(default_factory=list)  # in git: small text files (logs, plot data)
    settings: list[str] = field(default_factory=list)  # --params FILE, --set KEY=VALUE

    @property
    def cmd(self) -> str:
        """The command line dvc.yaml runs; Snakemake's rules spell out the same one."""
        return " ".join(["imgclf", *self.command, *self.settings])

    @property
    def code(self) -> list[str]:
        """The package modules among the dependencies."""
        return [dep for dep in self.deps if dep.startswith(f"{PACKAGE}/")]

    @property
    def data(self) -> list[str]:
        """The dependencies that are not package modules: what the stage reads."""
        return [dep for dep in self.deps if not dep.startswith(f"{PACKAGE}/")]

    @property
    def products(self) -> list[str]:
        """Every file and directory the stage writes."""
        return [*self.outs, *self.git_outs, *self.metrics]


def override_args(overrides: dict, keys: list[str]) -> list[str]:
    """``--set key=value`` for each override (Snakemake's ``--config``) that touches one of a
    stage's declared params: the others leave its command, and so its outputs, as they were."""
    import shlex

    from imgclf.config import format_override

    def touches(key: str) -> bool:
        return any(key == k or key.startswith(f"{k}.") or k.startswith(f"{key}.") for k in keys)

    return [f"--set {shlex.quote(format_override(k, v))}" for k, v in overrides.items() if touches(k)]


def prepare_source(dataset: str, params: dict) -> str:
    """What a data set's prepare stage reads: the downloaded archive, or a folder source's path."""
    _, entry = sources.source_of(dataset, params["data"])
    if entry["layout"] == "folder":
        return entry["path"]
    return raw_archive(dataset, entry["layout"])


def upstream_dir(experiment: experiments.Experiment, seed: int, params: dict) -> str | None:
    """The model directory a run starts from (transfer, fine-tuning), or None."""
    if not experiment.upstream:
        return None
    return model_dir(experiment.upstream, experiments.upstream_seed(experiment, seed, params))


def train_deps(experiment: experiments.Experiment, seed: int, params: dict) -> list[str]:
    deps = [prepared(experiment.dataset), *code_deps("train.py", experiment.model_source)]
    if experiment.upstream:
        deps.append(upstream_dir(experiment, seed, params))
    return deps


EVAL_KEYS = ("run_eagerly", "train_subset", "train_eval_images", "threads", "cpu_isa")


def stage_list(params: dict, params_file: str = PARAMS_FILE, overrides: dict | None = None) -> list[Stage]:
    """Every stage of the selected experiments; ``params`` already has ``overrides`` applied, and
    the commands pass on those their stage depends on."""
    used = datasets(params)
    stages: list[Stage] = []
    entries = {dataset: sources.source_of(dataset, params["data"])[1] for dataset in used}
    samples = {sample_kind(entry) for entry in entries.values()}
    for kind in [kind for kind in ARCHIVES if kind in samples]:
        stages.append(Stage(
            f"sample_{kind}",
            ["make-sample", kind, "--out", sample_archive(kind)],
            code_deps("sample.py"),
            [sample_archive(kind)],
        ))
    for dataset, entry in entries.items():
        if entry["layout"] == "folder":
            continue
        kind = sample_kind(entry)
        stages.append(Stage(
            f"download_{dataset}",
            ["download", dataset, "--out", raw_archive(dataset, entry["layout"])],
            [*([sample_archive(kind)] if kind else []), *code_deps("download.py")],
            [raw_archive(dataset, entry["layout"])],
            params=download_params(dataset, params),
        ))
    for dataset in used:
        source, layout = prepare_source(dataset, params), entries[dataset]["layout"]
        stages.append(Stage(
            f"prepare_{dataset}",
            ["prepare", dataset, "--source", source, "--out", prepared(dataset)],
            [source, *code_deps(sources.module_file(layout))],
            [prepared(dataset)],
            params=data_params(dataset),
        ))
    for name, seed in runs(params):
        experiment = experiments.EXPERIMENTS[name]
        train_args = ["train", name, "--seed", str(seed), "--data", prepared(experiment.dataset), "--out", model_dir(name, seed)]
        if experiment.upstream:
            train_args += ["--upstream", upstream_dir(experiment, seed, params)]
        train_args += ["--live", live_dir(name, seed), "--tensorboard", tensorboard_dir(name, seed)]
        stages.append(Stage(
            run_stage("train", name, seed),
            train_args,
            train_deps(experiment, seed, params),
            [model_dir(name, seed)],
            params=[f"{name}.{key}" for key in experiments.result_keys(experiment)],
            git_outs=[live_dir(name, seed)],
        ))
        stages.append(Stage(
            run_stage("evaluate", name, seed),
            ["evaluate", name, "--seed", str(seed), "--data", prepared(experiment.dataset), "--model",
             model_dir(name, seed), "--metrics", metrics_file(name, seed), "--out", eval_dir(name, seed)],
            [model_dir(name, seed), prepared(experiment.dataset), *code_deps("evaluate.py", experiment.model_source)],
            [],
            metrics=[metrics_file(name, seed)],
            git_outs=[eval_dir(name, seed)],
            params=[f"{name}.{key}" for key in EVAL_KEYS],
        ))
    every = runs(params)
    stages.append(Stage(
        "report",
        ["report", "--metrics-dir", "reports/metrics", "--live-dir", "reports/live", "--eval-dir", "reports/eval",
         "--out", "reports"],
        [*(metrics_file(n, s) for n, s in every), *(live_dir(n, s) for n, s in every),
         *(eval_dir(n, s) for n, s in every), *code_deps("report.py")],
        list(REPORT_OUTS),
        params=["experiments", *(f"data.{dataset}.source" for dataset in used),
                *(f"{name}.seeds" for name in experiments.selected(params))],
    ))
    for stage in stages:
        if stage.params:  # a stage that reads params gets the file, and the overrides it reads
            stage.settings = ["--params", params_file, *override_args(overrides or {}, stage.params)]
    return stages


def by_name(params: dict, params_file: str = PARAMS_FILE, overrides: dict | None = None) -> dict[str, Stage]:
    return {stage.name: stage for stage in stage_list(params, params_file, overrides)}


def check_stage(params: dict, params_file: str = PARAMS_FILE) -> dict:
    """check_params: its outputs are the stamp and the files ``write_checked`` writes, one per
    section of the validated params."""
    return {
        "cmd": f"imgclf check-params --params {params_file} --stamp {PARAMS_STAMP} --resolved {RESOLVED_DIR}",
        # what check-params imports that decides the values: the schema and its defaults (config.py,
        # experiments.py: the built-in sample sources take their paths from stages.py) and the writer
        "deps": [params_file, f"{PACKAGE}/config.py", f"{PACKAGE}/experiments.py", f"{PACKAGE}/stages.py"],
        # persist: a params file that fails the check leaves the last good values in place
        "outs": [{path: {"cache": False, "persist": True}}
                 for path in [PARAMS_STAMP, *(resolved_file(key) for key in params)]],
    }


def tidy(params: dict, params_file: str = PARAMS_FILE) -> list:
    """Remove the temporaries that killed runs left beside any stage output; return them."""
    from pathlib import Path

    from imgclf.io_utils import remove_stale_temporaries

    outputs = [Path(path) for stage in stage_list(params, params_file) for path in stage.products]
    return [path for output in outputs for path in remove_stale_temporaries(output)]


def dvc_yaml(params: dict) -> dict:
    stages = {CHECK_STAGE: check_stage(params)}
    for stage in stage_list(params):
        entry: dict = {"cmd": stage.cmd, "deps": [PARAMS_STAMP, *stage.deps]}
        if stage.params:
            files: dict[str, list[str]] = {}
            for key in stage.params:
                files.setdefault(resolved_file(key), []).append(key)
            entry["params"] = [{path: keys} for path, keys in files.items()]
        entry["outs"] = [*stage.outs, *({path: {"cache": False}} for path in stage.git_outs)]
        if stage.metrics:
            # in git, not in the cache: `dvc metrics diff` compares commits in a clone without the remote
            entry["metrics"] = [{path: {"cache": False}} for path in stage.metrics]
        stages[stage.name] = entry
    live_metrics, plots = [], []
    for name, seed in runs(params):
        live_metrics.append(f"{live_dir(name, seed)}/metrics.json")
        for metric in ("accuracy", "loss"):
            plots.append({f"{name}_s{seed}_{metric}": {
                "x": "step", "x_label": "epoch", "title": f"{name} seed {seed}: {metric}",
                "y": {live_metric(name, seed, metric): metric, live_metric(name, seed, f"val_{metric}"): f"val_{metric}"}}})
        plots.append({confusion_file(name, seed): {
            "template": "confusion", "x": "predicted", "y": "actual", "title": f"{name} seed {seed}: confusion matrix"}})
    # DVCLive's latest-epoch summaries, as the dvc.yaml DVCLive writes would list them
    return {"stages": stages, "metrics": live_metrics, "plots": plots}


DVC_YAML_HEADER = """\
# Generated by `imgclf dvc-yaml` from src/imgclf/stages.py and the experiment registry. Do not edit.
#
# Why generated and not `foreach`/`matrix` over a `vars` table: each stage depends on exactly the
# package modules its command imports (derived from the sources) and on exactly the params that
# change its result, and both lists differ in length from one experiment to the next (a DenseNet
# imports more modules than the seed CNN; fine-tuning reads more params than training from
# scratch). DVC checks dvc.yaml's schema before it interpolates, so `deps: ${item.deps}` is
# refused ("expected a list"); the alternatives, one dependency on the whole package or on a whole
# params section, would rerun training when an unrelated module or a cluster resource changes.
# tests/test_stages.py keeps this claim honest against the installed DVC.
#
# The params come from config/resolved/<section>.json, which the check_params stage writes from
# params.yaml with every default filled in: params.yaml states only the choices, and each stage
# still lists every param it reads.
"""


def dvc_yaml_text(params: dict) -> str:
    import yaml

    header = DVC_YAML_HEADER
    return header + yaml.safe_dump(dvc_yaml(params), sort_keys=False, width=200)


def check_dvc_yaml(params: dict, params_file: str, path: str = "dvc.yaml") -> None:
    """dvc.yaml lists one stage per (experiment, seed) of params.yaml: after a change of ``seeds``
    (or a folder source) it must be regenerated, or DVC would run another set of stages than
    Snakemake. Checked where both engines start; only for params.yaml, the file dvc.yaml reads."""
    from pathlib import Path

    from imgclf.errors import PipelineError

    if Path(params_file).resolve() != Path(PARAMS_FILE).resolve() or not Path(path).exists():
        return
    if Path(path).read_text() != dvc_yaml_text(params):
        raise PipelineError(f"{path}: out of date with {params_file} (experiments, seeds or sources changed?); "
                            "run `imgclf dvc-yaml`")
