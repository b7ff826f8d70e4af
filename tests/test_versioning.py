"""DVC and Snakemake agree: one DAG, the same reruns for the same change, results recorded across
engines, runs compared and shared through a DVC remote."""

import json
import os
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, dvc_stages_to_run, dvc_up_to_date, edit_params, file_hashes, load_params, run, snakemake_jobs
from imgclf import config, experiments, paths, stages

pytestmark = pytest.mark.slow
GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]


def snakemake_graph(project: Path, force: bool = True) -> tuple[dict, set]:
    """Stage -> outputs, and the stage edges, of the Snakemake DAG: every job (forced dry run), or
    only the jobs Snakemake would run now (``force=False``). Each job is named by the stage (DVC's
    name) whose outputs, as the Snakemake rules declare them (``Stage.outs``), it writes."""
    out = run(["snakemake", "--dry-run", *(["--forceall"] if force else []), "--cores", "1"], project).stdout
    table = stages.by_name(config.load(project / "params.yaml"))
    stage_of = {out: name for name, stage in table.items() for out in stage.outs}
    jobs, current = [], None
    for line in out.splitlines():
        if line.startswith(("rule ", "localrule ")) and line.endswith(":"):
            current = {"rule": line.split()[1][:-1], "input": [], "output": []}
            jobs.append(current)
        elif current and line.strip().startswith(("input:", "output:")):
            key, _, files = line.strip().partition(": ")
            current[key] = [f.strip() for f in files.split(",") if f.strip()]
    jobs = [job for job in jobs if job["rule"] != "all"]
    outputs = {}
    producer = {}
    for job in jobs:
        name = next(stage_of[f] for f in job["output"] if f in stage_of)
        outputs[name] = set(job["output"])
        for f in job["output"]:
            producer[f] = name
    edges = {(producer[f], name) for job in jobs for f in job["input"] if f in producer
             for name in [next(stage_of[o] for o in job["output"] if o in stage_of)]}
    return outputs, edges


def dvc_outputs(project: Path) -> dict:
    """Stage -> outputs (outs, metrics and plots), as DVC reads dvc.yaml: its ``foreach`` families
    expanded over config/runs.yaml, each stage under its name (``train@seed_cnn-s0``)."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        return {stage.name: {out.def_path for out in stage.outs} for stage in repo.index.stages
                if Path(stage.path).resolve() == (Path(project) / "dvc.yaml").resolve()}


def dvc_graph(project: Path) -> tuple[dict, set]:
    outputs = dvc_outputs(project)
    dot = run(["dvc", "dag", "--dot"], project).stdout
    edges = set()
    for line in dot.splitlines():
        if "->" in line:
            left, right = (part.strip().strip(";").strip().strip('"') for part in line.split("->"))
            edges.add((left, right))
    return outputs, edges


# The paper's pipeline written out by hand (not from imgclf.experiments or imgclf.stages, which
# generate both engines' DAGs): which data set each experiment trains on and whose model it starts from.
PAPER_DATASETS = {
    "imagenet200": ["seed_cnn", "seed_cnn_hwc", "autokeras", "alexnet32", "densenet121", "densenet169",
                    "densenet201", "densenet161", "densenet121_small_stem"],
    "cifar10": ["cifar_base_cnn", "cifar_densenet201_transfer", "cifar_densenet201_finetune"],
}
PAPER_UPSTREAM = {"cifar_densenet201_transfer": "densenet201", "cifar_densenet201_finetune": "cifar_densenet201_transfer"}


def paper_dag(params: dict) -> tuple[dict, dict, set]:
    """Snakemake's outputs per stage, DVC's, and the edges. The engines declare the same files but
    for a training run's DVCLive directory: a Snakemake output as a whole, in dvc.yaml its summary
    (metrics) and its per-epoch plots. Every data set's source in params.yaml is its embedded sample."""
    sample = {"imagenet200": ("tiny_imagenet", "tiny-imagenet-200.zip"), "cifar10": ("cifar10", "cifar-10-binary.tar.gz")}
    suffix = {"imagenet200": ".zip", "cifar10": ".tar.gz"}

    def train_stage(name, seed):
        return f"{'train_upstream' if name in PAPER_UPSTREAM else 'train'}@{name}-s{seed}"

    smk, dvc, edges = {}, {}, set()
    for dataset, names in PAPER_DATASETS.items():
        name_of_sample, filename = sample[dataset]
        make, download, prepare = f"sample@{name_of_sample}", f"download_sample@{dataset}", f"prepare@{dataset}"
        smk[make] = dvc[make] = {f"data/sample/{filename}"}
        smk[download] = dvc[download] = {f"data/raw/{dataset}{suffix[dataset]}"}
        smk[prepare] = dvc[prepare] = {f"data/prepared/{dataset}"}
        edges |= {(make, download), (download, prepare)}
        for name in names:
            for seed in params[name]["seeds"]:
                train, evaluate = train_stage(name, seed), f"evaluate@{name}-s{seed}"
                model, live = f"models/{name}/seed{seed}", f"reports/live/{name}/seed{seed}"
                smk[train] = {model, live}
                dvc[train] = {model, f"{live}/metrics.json", f"{live}/plots"}
                smk[evaluate] = dvc[evaluate] = {f"reports/eval/{name}/seed{seed}", f"reports/metrics/{name}/seed{seed}.json",
                                                 f"reports/eval/{name}/seed{seed}.confusion.csv"}
                edges |= {(prepare, train), (prepare, evaluate), (train, evaluate), (train, "report"), (evaluate, "report")}
                if name in PAPER_UPSTREAM:
                    up = PAPER_UPSTREAM[name]
                    up_seed = seed if seed in params[up]["seeds"] else params[up]["seeds"][0]
                    edges.add((train_stage(up, up_seed), train))
    smk["report"] = dvc["report"] = {"reports/results.md", "reports/results.csv", "reports/figures"}
    return smk, dvc, edges


def test_one_dag_in_both_engines():
    """Both engines' DAGs equal the paper's pipeline written out by hand above."""
    expected_smk, expected_dvc, expected_edges = paper_dag(config.load(ROOT / "params.yaml"))
    smk_outputs, smk_edges = snakemake_graph(ROOT)
    dvc_outputs, dvc_edges = dvc_graph(ROOT)
    assert smk_outputs == expected_smk
    assert smk_edges == expected_edges
    # DVC's one extra stage checks params.yaml before any other (Snakemake does so while parsing)
    # and writes each stage's params values, one file per stage under config/resolved: every stage
    # but the samples' (which read no params) depends on its own file there
    assert dvc_outputs == {**expected_dvc, "check_params": {"config/resolved"}}
    reads_params = {name for name in expected_dvc if not name.startswith("sample@")}
    assert dvc_edges == expected_edges | {("check_params", name) for name in reads_params}


def _edit_params(project, section, key, value):
    """Set a param in params.yaml (whether it states it or leaves it to its default), then check it
    as `dvc repro` does first (its check_params stage writes each stage's params values under
    config/resolved). Returns the undo."""
    path = project / "params.yaml"
    before, stat = path.read_text(), path.stat()
    check = ["imgclf", "check-params", "--resolved", paths.RESOLVED_DIR]
    assert config.load(path)[section][key] != value
    edit_params(path, {f"{section}.{key}": value})
    run(check, project)

    def undo():
        path.write_text(before)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        run(check, project)
    return undo


def _append_line(project, relative):
    path = project / relative
    before, stat = path.read_text(), path.stat()
    path.write_text(before + "\n# an edit\n")
    return lambda: (path.write_text(before), os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns)))


NEW_LAYOUT = '''"""A layout no data set uses yet (nothing imports this module, no Layout record names it)."""


def prepare(path, out_dir, settings, workers):
    raise NotImplementedError("not registered")
'''


def _new_file(project, relative, text):
    path = project / relative
    assert not path.exists()
    path.write_text(text)
    return path.unlink


CI_RUNS = stages.runs(config.validate(load_params("config/ci.yaml")))


def _expected(changed_experiments, data=None):
    names = list(changed_experiments)
    for name, experiment in experiments.EXPERIMENTS.items():  # downstream of a changed model
        if experiment.upstream in names and name not in names:
            names.append(name)
    runs = [(n, s) for n, s in CI_RUNS if n in names]
    dvc = {stages.run_stage(kind, n, s) for n, s in runs for kind in ("train", "evaluate")} | {"report"}
    smk = {"train": len(runs), "evaluate": len(runs), "report": 1}
    if data:
        dvc.add(f"prepare@{data}")
        smk["prepare"] = 1
    return smk, dvc


IMAGENET = [n for n, e in experiments.EXPERIMENTS.items() if e.dataset == "imagenet200"]
CASES = {
    "data param": (lambda p: _edit_params(p, "data", "split_seed", 7), _expected(list(experiments.EXPERIMENTS), None)),
    "experiment param": (lambda p: _edit_params(p, "alexnet32", "learning_rate", 0.05), _expected(["alexnet32"])),
    "model source": (lambda p: _append_line(p, "src/imgclf/models/alexnet.py"), _expected(["alexnet32"])),
    "shared training code": (lambda p: _append_line(p, "src/imgclf/train.py"), _expected(list(experiments.EXPERIMENTS))),
    # code dependencies come from each family's command module's imports (imgclf.codedeps), and
    # each stage's own model or layout module: a module the report imports reruns the report only;
    # a model module (AutoKeras', which evaluation also imports to load AutoKeras models) reruns
    # the experiments built by it; a layout module of no data set of this run (the folder layout:
    # the sources here are the samples' archives) nothing
    "a module the report imports": (lambda p: _append_line(p, "src/imgclf/report.py"), ({"report": 1}, {"report"})),
    "a model family module": (lambda p: _append_line(p, "src/imgclf/models/autokeras_search.py"), _expected(["autokeras"])),
    "a module no stage imports": (lambda p: _append_line(p, "src/imgclf/sources/folder.py"), ({}, set())),
    # the paper's titles, figures and notes: only the report imports them
    "a paper note": (lambda p: _append_line(p, "src/imgclf/paper.py"), ({"report": 1}, {"report"})),
    # a new file that nothing imports yet is no stage's dependency
    "a new layout module": (lambda p: _new_file(p, "src/imgclf/sources/newlayout.py", NEW_LAYOUT), ({}, set())),
    # the experiment registry is check_params' dep and the report's (it lists the experiments), no
    # training's: a run reads its record from its resolved file, which this edit leaves as it was
    "the experiment registry": (lambda p: _append_line(p, "src/imgclf/experiments.py"), ({"report": 1}, {"report"})),
    # the engines' stage table is check_params' dep (check-params imports it), no other stage's;
    # check_params then writes the same resolved files, so nothing downstream of it reruns
    "the stage table": (lambda p: _append_line(p, "src/imgclf/stages.py"), ({}, set())),
    # upstream propagation, written out by hand: the transfer model starts from DenseNet-201's
    # weights and the fine-tuned model from the transfer model's
    "upstream model param": (lambda p: _edit_params(p, "densenet201", "learning_rate", 0.05),
        ({"train": 3, "evaluate": 3, "report": 1},
         {"train@densenet201-s0", "evaluate@densenet201-s0", "train_upstream@cifar_densenet201_transfer-s0",
          "evaluate@cifar_densenet201_transfer-s0", "train_upstream@cifar_densenet201_finetune-s0",
          "evaluate@cifar_densenet201_finetune-s0", "report"})),
}
# the cases that rerun check_params (`dvc repro`'s first stage): an edit of params.yaml, or of one
# of its code deps
RECHECKS = {"data param", "experiment param", "upstream model param", "the experiment registry", "the stage table"}


def test_nothing_changed_nothing_reruns(ci_project):
    assert snakemake_jobs(ci_project) == {}
    assert dvc_stages_to_run(ci_project) == set()
    assert dvc_up_to_date(ci_project)


@pytest.mark.parametrize("case", list(CASES))
def test_a_change_reruns_exactly_what_it_touches(ci_project, case):
    apply, (smk_expected, dvc_expected) = CASES[case]
    if case == "data param":  # split_seed is read by both prepare stages
        smk_expected = {**smk_expected, "prepare": 2}
        dvc_expected = dvc_expected | {"prepare@imagenet200", "prepare@cifar10"}
    undo = apply(ci_project)
    try:
        assert snakemake_jobs(ci_project) == smk_expected
        # which jobs, not only how many per rule: each engine's set of stages equals the expected one
        assert set(snakemake_graph(ci_project, force=False)[0]) == dvc_expected
        # `dvc repro --dry` names the stages whose own deps or params changed; what it then runs
        # is those plus everything downstream of them in `dvc dag`
        direct = dvc_stages_to_run(ci_project)
        # a params edit (or one of check_params' own code deps) reruns check_params; of its outputs,
        # each stage reads only its own params' values, so what is downstream of it alone does not rerun
        assert ("check_params" in direct) == (case in RECHECKS)
        direct.discard("check_params")
        _, edges = dvc_graph(ci_project)
        closure, frontier = set(direct), set(direct)
        while frontier:
            frontier = {b for a, b in edges if a in frontier} - closure
            closure |= frontier
        assert closure == dvc_expected
        assert bool(direct) == bool(dvc_expected)
    finally:
        undo()
    assert snakemake_jobs(ci_project) == {}
    assert dvc_stages_to_run(ci_project) == set()


def test_compare_runs_and_cross_engines(ci_project):
    run([*GIT, "add", "-A"], ci_project)
    run([*GIT, "commit", "-qm", "baseline results"], ci_project)
    # a variant through DVC experiments
    run(["dvc", "exp", "run", "-S", "alexnet32.epochs=2", "-n", "two-epochs"], ci_project, timeout=900)
    shown = run(["dvc", "exp", "show", "--csv"], ci_project).stdout
    metrics_path = paths.metrics_file("alexnet32", 0)
    assert "two-epochs" in shown and "alexnet32.epochs" in shown and f"{metrics_path}:top1" in shown
    diff = run(["dvc", "metrics", "diff", "--json"], ci_project).stdout
    changed = json.loads(diff)
    live_metrics = f"{paths.live_dir('alexnet32', 0)}/metrics.json"  # its DVCLive summary: the last epoch
    assert set(changed) == {metrics_path, live_metrics}, "only the retrained experiment's metrics change"
    assert changed[live_metrics]["step"] == {"old": 1, "new": 2, "diff": 1}
    assert changed[metrics_path]["epochs"] == {"old": 1, "new": 2, "diff": 1}
    assert changed[metrics_path]["loss"]["old"] != changed[metrics_path]["loss"]["new"]  # top-1 may tie; the loss moves
    history = yaml.safe_load((ci_project / paths.model_dir("alexnet32", 0) / "train.json").read_text())
    assert history["epochs"] == 2
    # DVC ran it: after `make sync` Snakemake agrees there is nothing to do
    run(["make", "-s", "sync", "STAMP="], ci_project)
    assert snakemake_jobs(ci_project) == {}
    plots = run(["dvc", "plots", "diff", "--out", "plots-html"], ci_project)
    page = (ci_project / "plots-html" / "index.html").read_text()
    # each plot is titled with its file: the run's per-epoch accuracy (DVCLive), and its confusion
    # pairs drawn with DVC's confusion template (the only one with rect marks)
    confusion = paths.confusion_file("alexnet32", 0)
    assert f"{paths.live_dir('alexnet32', 0)}/plots/metrics/accuracy.tsv" in page, plots.stdout[-500:]
    assert confusion in page and '"rect"' in page, plots.stdout[-500:]
    # back to the committed results: git restores the metrics and logs, DVC the models from its
    # cache; no retraining
    run(["git", "checkout", "--", "params.yaml", "dvc.lock", "reports", "config/resolved"], ci_project)
    run(["dvc", "checkout", "--quiet"], ci_project)
    run(["make", "-s", "sync", "STAMP="], ci_project)
    assert dvc_stages_to_run(ci_project) == set()
    assert snakemake_jobs(ci_project) == {}


def test_push_then_pull_into_a_fresh_clone(ci_project, tmp_path):
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "--local", "--default", "--force", "testremote", str(remote)], ci_project)
    if run(["git", "status", "--porcelain"], ci_project).stdout.strip():
        run([*GIT, "add", "-A"], ci_project)
        run([*GIT, "commit", "-qm", "results"], ci_project)
    run(["dvc", "push", "--quiet"], ci_project)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(ci_project), str(clone)], tmp_path)
    run(["dvc", "remote", "add", "--local", "--default", "testremote", str(remote)], clone)
    run(["make", "-s", "pull", "STAMP="], clone)
    tracked = ("data/prepared", "models", "reports/metrics", "reports/figures")
    assert file_hashes(clone, *tracked) == file_hashes(ci_project, *tracked)
    assert dvc_up_to_date(clone)
    assert dvc_stages_to_run(clone) == set()
    assert snakemake_jobs(clone) == {}
