"""The stage table: every stage the params ask for, with its family (dvc.yaml's ``foreach``
stage), the command with its explicit paths, what it reads and writes, and the params values it
depends on. The Snakemake rules run these commands on these files; ``config/runs.yaml`` (dvc.yaml's
vars) lists the same stages per family, so both engines run the same commands."""

import functools
import operator
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from imgclf import codedeps, datasets, experiments, paths
from imgclf.errors import PipelineError
from imgclf.io_utils import remove_stale_temporaries, stale_partial_downloads, write_text
from imgclf.overrides import format_override
from imgclf.paths import PARAMS_FILE
from imgclf.sources import tree

VARIANTS = ("_upstream", "_sample", "_folder")  # dvc.yaml families that run another's command with other deps


@dataclass
class Stage:
    """One stage, as both engines run it: ``imgclf`` with ``command`` (explicit paths), then the
    params file and any overrides (``settings``); ``item``: its entry in dvc.yaml's foreach."""

    family: str
    key: str  # the foreach key; "" for a stage without foreach
    command: list[str]
    deps: list[str]  # data and the resolved params file; the code is ``code``
    outs: list[str]
    item: dict = field(default_factory=dict)
    resolved: str | None = None  # config/resolved/<kind>/<name>.json: the params it reads
    settings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """DVC's name for it: ``train@seed_cnn-s0``."""
        return f"{self.family}@{self.key}" if self.key else self.family

    @property
    def cmd(self) -> str:
        """The shell line: ``command``'s words, the source path (the one a user gives) in double quotes."""
        words = [f'"{word}"' if flag == "--source" else word for flag, word in zip(["", *self.command], self.command)]
        return " ".join(["imgclf", *words, *self.settings])

    @property
    def code(self) -> list[str]:
        family = base_family(self.family)
        own = [self.item["module"]] if "module" in self.item else []
        return [*codedeps.family(family, own_modules().get(family, frozenset())), *own]


def base_family(family: str) -> str:
    """The family whose command and code a variant runs: ``train_upstream`` -> ``train``."""
    return next((family.removesuffix(v) for v in VARIANTS if family.endswith(v)), family)


@functools.cache  # the registries do not change in a process; Snakemake asks once per job
def own_modules() -> dict[str, frozenset[str]]:
    """Each family's own modules (its stages' ``${item.module}``): the model modules for training
    and evaluation, the layout modules for prepare."""
    models = frozenset(codedeps.model_module(e.module) for e in experiments.EXPERIMENTS.values())
    return {"train": models, "evaluate": models,
            "prepare": frozenset(codedeps.layout_module(layout.module) for layout in datasets.LAYOUTS.values())}


def runs(params: dict) -> list[tuple[str, int]]:
    """Every (experiment, seed) training run that params ask for, in registry order."""
    return [(name, seed) for name in experiments.selected(params) for seed in params[name]["seeds"]]


def used_datasets(params: dict) -> list[str]:
    """The data sets the selected experiments train on, in registry order."""
    used = {experiments.EXPERIMENTS[name].dataset for name in experiments.selected(params)}
    return [dataset for dataset in datasets.DATASETS if dataset in used]


def source_listings(params: dict, origin: str) -> dict[str, str]:
    """Check that every selected source given by ``path`` exists, and scan each folder source
    (``sources.tree.scan``: one line naming any entry it refuses); return each folder-sourced data
    set's digest, Snakemake's rerun trigger for its prepare stage: an image tree's listing (names,
    sizes, times), a folder of IDX files' content."""
    listings = {}
    for dataset in used_datasets(params):
        name, entry = datasets.source_of(dataset, params["data"])
        if "path" in entry and not os.path.exists(entry["path"]):
            raise PipelineError(f"{origin}: data.sources.{name}.path: {entry['path']} does not exist"
                                f"{tree.missing(entry['path'])}")
        if datasets.LAYOUTS[entry["layout"]].suffix is None:
            listings[dataset] = tree.listing_digest(entry["path"])
        elif datasets.read_in_place(entry):
            listings[dataset] = tree.content_digest(entry["path"])
    return listings


def write_listings(params: dict, listings: dict[str, str]) -> dict[str, str]:
    """Snakemake's record of each folder source (``paths.listing_file``): its digest, rewritten only
    when it differs, so the file's time is when the folder last changed as far as Snakemake knows.
    It is prepare's input in place of the folder: a changed folder reruns prepare whoever ran it
    last (Snakemake records no params for what ``make sync`` touched after DVC ran it). A record
    written anew (first run, ``.snakemake`` removed) takes the time of the folder's newest file, so
    that alone reruns nothing. DVC hashes the folder itself. Returns the files by data set."""
    files = {}
    for dataset, digest in listings.items():
        path = Path(paths.listing_file(dataset))
        if not path.exists():
            folder = datasets.source_of(dataset, params["data"])[1]["path"]
            newest = max((mtime for _, _, mtime in tree.scan(folder)), default=0)
            write_text(path, f"{digest}\n")
            os.utime(path, ns=(newest, newest))
        elif path.read_text() != f"{digest}\n":
            write_text(path, f"{digest}\n")
        files[dataset] = str(path)
    return files


def upstream_dir(experiment: experiments.Experiment, seed: int, params: dict) -> str | None:
    """The model directory a run starts from (transfer, fine-tuning), or None."""
    if not experiment.upstream:
        return None
    seeds = params[experiment.upstream]["seeds"]
    return paths.model_dir(experiment.upstream, seed if seed in seeds else seeds[0])


def train_family(name: str) -> str:
    return "train_upstream" if experiments.EXPERIMENTS[name].upstream else "train"


def run_stage(kind: str, name: str, seed: int) -> str:
    """DVC's name of a run's train or evaluate stage."""
    family = train_family(name) if kind == "train" else kind
    return f"{family}@{paths.run_key(name, seed)}"


def _run_item(experiment: experiments.Experiment, seed: int) -> dict:
    """A run's entry in the train and evaluate families of config/runs.yaml."""
    return {"experiment": experiment.name, "seed": seed, "dataset": experiment.dataset,
            "module": codedeps.model_module(experiment.module)}


def stage_list(params: dict, overrides: dict | None = None) -> list[Stage]:
    """Every stage of the selected experiments; ``params`` already has ``overrides`` applied (the
    commands pass on those each stage reads, ``--set``)."""
    used = used_datasets(params)
    entries = {dataset: datasets.source_of(dataset, params["data"])[1] for dataset in used}
    samples = {dataset: datasets.sample_of(entry) for dataset, entry in entries.items()}
    table: list[Stage] = []
    for sample in [s for s in datasets.SAMPLES.values() if s in samples.values()]:
        out = datasets.sample_archive(sample)
        table.append(Stage("sample", sample.name, ["make-sample", sample.name, "--out", out], [], [out], {"out": out}))
    for dataset, entry in entries.items():
        if datasets.read_in_place(entry):
            continue
        out, sample = paths.raw_archive(dataset, datasets.LAYOUTS[entry["layout"]].suffix), samples[dataset]
        item = {"out": out, **({"sample": datasets.sample_archive(sample)} if sample else {})}
        table.append(Stage("download_sample" if sample else "download", dataset, ["download", dataset, "--out", out],
                           [item["sample"]] if sample else [], [out], item, paths.resolved_file("download", dataset)))
    for dataset, entry in entries.items():
        layout = datasets.LAYOUTS[entry["layout"]]
        # a folder source (an image tree, a folder of IDX files) is read in place: DVC hashes it
        source = entry["path"] if datasets.read_in_place(entry) else paths.raw_archive(dataset, layout.suffix)
        table.append(Stage("prepare_folder" if layout.suffix is None else "prepare", dataset,
                           ["prepare", dataset, "--source", source, "--out", paths.prepared(dataset)],
                           [source], [paths.prepared(dataset)],
                           {"source": source, "module": codedeps.layout_module(layout.module)},
                           paths.resolved_file("prepare", dataset)))
    evaluations = []  # after every training stage
    for name, seed in runs(params):
        experiment, key = experiments.EXPERIMENTS[name], paths.run_key(name, seed)
        data, model = paths.prepared(experiment.dataset), paths.model_dir(name, seed)
        item = _run_item(experiment, seed)
        upstream = upstream_dir(experiment, seed, params)
        command = ["train", name, "--seed", str(seed), "--data", data, "--out", model]
        if upstream:
            item["upstream"] = upstream
            command += ["--upstream", upstream]
        command += ["--live", paths.live_dir(name, seed), "--tensorboard", paths.tensorboard_dir(name, seed)]
        table.append(Stage(train_family(name), key, command, [data, *([upstream] if upstream else [])],
                           [model, paths.live_dir(name, seed)], item, paths.resolved_file("train", name)))
        evaluations.append(Stage(
            "evaluate", key,
            ["evaluate", name, "--seed", str(seed), "--data", data, "--model", model, "--metrics",
             paths.metrics_file(name, seed), "--out", paths.eval_dir(name, seed), "--confusion",
             paths.confusion_file(name, seed)],
            [model, data], [paths.metrics_file(name, seed), paths.eval_dir(name, seed), paths.confusion_file(name, seed)],
            _run_item(experiment, seed), paths.resolved_file("evaluate", name)))
    table += evaluations
    every = runs(params)
    table.append(Stage(
        "report", "", ["report", "--metrics-dir", "reports/metrics", "--live-dir", "reports/live", "--eval-dir",
                       "reports/eval", "--out", "reports"],
        [*(paths.metrics_file(n, s) for n, s in every), *(paths.live_dir(n, s) for n, s in every),
         *(paths.eval_dir(n, s) for n, s in every)],
        list(paths.REPORT_OUTS), resolved=paths.resolved_file("report", "report")))
    keys = stage_keys(params)
    for stage in table:
        if stage.resolved:  # a stage that reads params gets the file, and the overrides it reads
            stage.settings = ["--params", PARAMS_FILE, *override_args(overrides or {}, keys[stage.resolved])]
    return table


def value_of(params: dict, key: str):
    return functools.reduce(operator.getitem, key.split("."), params)


def stage_keys(params: dict) -> dict[str, list[str]]:
    """Each resolved file -> the dotted params keys it holds."""
    keys = {}
    for dataset in used_datasets(params):
        name, entry = datasets.source_of(dataset, params["data"])
        options = datasets.LAYOUTS[entry["layout"]].options  # read by prepare, not by the download
        keys[paths.resolved_file("download", dataset)] = [f"data.{dataset}.source", *(
            [f"data.sources.{name}.{key}" for key in entry if key not in options] if options else [f"data.sources.{name}"])]
        keys[paths.resolved_file("prepare", dataset)] = datasets.prepare_keys(dataset, params["data"])
    for name in experiments.selected(params):
        experiment = experiments.EXPERIMENTS[name]
        keys[paths.resolved_file("train", name)] = [f"{name}.{key}" for key in experiments.result_keys(experiment)]
        keys[paths.resolved_file("evaluate", name)] = [f"{name}.{key}" for key in experiments.evaluation_keys()]
    sources = [datasets.source_of(dataset, params["data"]) for dataset in used_datasets(params)]
    keys[paths.resolved_file("report", "report")] = [
        "experiments", *(f"data.{dataset}.source" for dataset in used_datasets(params)),
        *(f"{name}.seeds" for name in experiments.selected(params)),
        *(f"data.sources.{name}.idx_md5" for name, entry in sources if "idx_md5" in entry)]  # what published figures are on
    return keys


def by_name(params: dict, overrides: dict | None = None) -> dict[str, Stage]:
    return {stage.name: stage for stage in stage_list(params, overrides)}


def override_args(overrides: dict, keys: list[str]) -> list[str]:
    """``--set key=value`` for each override (Snakemake's ``--config``) that touches one of a
    stage's params: the others leave its command, and so its outputs, as they were."""
    def touches(key: str) -> bool:
        return any(key == k or key.startswith(f"{k}.") or k.startswith(f"{key}.") for k in keys)

    return [f"--set {shlex.quote(format_override(k, v))}" for k, v in overrides.items() if touches(k)]


def runs_vars(params: dict) -> dict:
    """dvc.yaml's vars: each foreach family's stages (key -> item), every family present."""
    families = {family: {} for family in ("sample", "download", "download_sample", "prepare", "prepare_folder",
                                          "train", "train_upstream", "evaluate")}
    for stage in stage_list(params):
        if stage.key:
            families[stage.family][stage.key] = stage.item
    return families


def _walk(path: str) -> list[str]:
    """``path`` and, for a directory, everything under it (links not followed)."""
    if os.path.isdir(path) and not os.path.islink(path):
        return [path, *(os.path.join(top, name) for top, dirs, files in os.walk(path) for name in dirs + files)]
    return [path] if os.path.lexists(path) else []


def check_clock(params: dict, now: float | None = None) -> None:
    """Refuse, in one line, what Snakemake compares dated after ``now`` (data copied from a machine
    whose clock runs fast): the stage outputs, which are the other stages' data inputs, the code and
    the resolved params files (a folder source is compared through its listing file). Snakemake fails a job whose output is
    older than its input as a clock skew, and removes that output, so ``snakemake --touch`` (make
    sync) would delete a trained model."""
    now = time.time() if now is None else now
    inside = [path for stage in stage_list(params) for path in (*stage.outs, *stage.code, *filter(None, [stage.resolved]))]
    ahead = []
    for path in dict.fromkeys(found for path in inside for found in _walk(path)):
        try:
            mtime = os.lstat(path).st_mtime
        except FileNotFoundError:  # gone meanwhile
            continue
        if mtime > now + 1:
            ahead.append((mtime, path))
    if ahead:
        when, first = max(ahead)
        roots = " ".join(dict.fromkeys(shlex.quote(Path(path).parts[0]) for _, path in sorted(ahead, key=operator.itemgetter(1))))
        more = f" (and {len(ahead) - 1} more)" if len(ahead) > 1 else ""
        raise PipelineError(
            f"{first}: modified {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(when))}, "
            f"{(when - now) / 3600:.1f} h ahead of this machine's clock{more}; Snakemake would take it for "
            f"clock skew and remove outputs. Fix the clock, or set such times to now "
            f"(find {roots} -newermt now -exec touch -h -c {{}} +), then run this again")


def tidy(params: dict) -> list:
    """Remove the temporaries that killed runs left beside any stage output, and the partial
    downloads no selected source resumes from (or older than a week); return them."""
    table = stage_list(params)
    outputs = [Path(path) for stage in table for path in stage.outs]
    removed = [path for output in outputs for path in remove_stale_temporaries(output)]
    selected = {Path(paths.partial_download(stage.outs[0], datasets.source_of(stage.key, params["data"])[1]["md5"]))
                for stage in table if stage.family.startswith("download")}
    raw = Path(paths.RAW_DIR)
    for part in stale_partial_downloads(raw, selected, paths.PART_MAX_AGE_S) if raw.is_dir() else []:
        part.unlink(missing_ok=True)
        removed.append(part)
    return removed
