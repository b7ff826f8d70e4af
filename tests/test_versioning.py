"""DVC and Snakemake agree: one DAG, the same reruns for the same change, results recorded across
engines, runs compared and shared through a DVC remote."""

import json
import os
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, dvc_stages_to_run, file_hashes, run, snakemake_jobs
from imgclf import config, experiments, stages

pytestmark = pytest.mark.slow
GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]


def snakemake_graph(project: Path) -> tuple[dict, set]:
    """Stage -> outputs, and the stage edges, of the whole Snakemake DAG (forced dry run)."""
    out = run(["snakemake", "--dry-run", "--forceall", "--cores", "1"], project).stdout
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


def dvc_graph(project: Path) -> tuple[dict, set]:
    spec = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    outputs = {name: set(entry["outs"]) | set(entry.get("metrics", [])) for name, entry in spec.items()}
    dot = run(["dvc", "dag", "--dot"], project).stdout
    edges = set()
    for line in dot.splitlines():
        if "->" in line:
            left, right = (part.strip().strip(";").strip().strip('"') for part in line.split("->"))
            edges.add((left, right))
    return outputs, edges


def test_one_dag_in_both_engines():
    smk_outputs, smk_edges = snakemake_graph(ROOT)
    dvc_outputs, dvc_edges = dvc_graph(ROOT)
    assert set(smk_outputs) == set(dvc_outputs)
    assert smk_outputs == dvc_outputs
    assert smk_edges == dvc_edges
    assert ("train_densenet201_s0", "train_cifar_densenet201_transfer_s0") in dvc_edges
    runs = stages.runs(config.load(ROOT / "params.yaml"))
    assert len(dvc_outputs) == 4 + 2 + 2 * len(runs) + 1
    assert {("train_seed_cnn_s1", "evaluate_seed_cnn_s1"), ("evaluate_seed_cnn_s2", "report")} <= dvc_edges


def _edit_params(project, section, key, value):
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    old = params[section][key]
    params[section][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return old


def _append_line(project, relative):
    path = project / relative
    before, stat = path.read_text(), path.stat()
    path.write_text(before + "\n# an edit\n")
    return lambda: (path.write_text(before), os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns)))


CI_RUNS = stages.runs(config.load(ROOT / "config/ci.yaml"))


def _expected(changed_experiments, data=None):
    names = list(changed_experiments)
    for name, experiment in experiments.EXPERIMENTS.items():  # downstream of a changed model
        if experiment.upstream in names and name not in names:
            names.append(name)
    runs = [(n, s) for n, s in CI_RUNS if n in names]
    dvc = {stages.run_stage(kind, n, s) for n, s in runs for kind in ("train", "evaluate")} | {"report"}
    smk = {"train": len(runs), "evaluate": len(runs), "report": 1}
    if data:
        dvc.add(f"prepare_{data}")
        smk["prepare"] = 1
    return smk, dvc


IMAGENET = [n for n, e in experiments.EXPERIMENTS.items() if e.dataset == "imagenet200"]
CASES = {
    "data param": (lambda p: (lambda old: lambda: _edit_params(p, "data", "split_seed", old))(
        _edit_params(p, "data", "split_seed", 7)), _expected(list(experiments.EXPERIMENTS), None)),
    "experiment param": (lambda p: (lambda old: lambda: _edit_params(p, "alexnet32", "learning_rate", old))(
        _edit_params(p, "alexnet32", "learning_rate", 0.05)), _expected(["alexnet32"])),
    "model source": (lambda p: _append_line(p, "src/imgclf/models/alexnet.py"), _expected(["alexnet32"])),
    "shared training code": (lambda p: _append_line(p, "src/imgclf/train.py"), _expected(list(experiments.EXPERIMENTS))),
}


def test_nothing_changed_nothing_reruns(ci_project):
    assert snakemake_jobs(ci_project) == {}
    assert dvc_stages_to_run(ci_project) == set()
    assert run(["dvc", "status", "--quiet"], ci_project, check=False).returncode == 0


@pytest.mark.parametrize("case", list(CASES))
def test_a_change_reruns_exactly_what_it_touches(ci_project, case):
    apply, (smk_expected, dvc_expected) = CASES[case]
    if case == "data param":  # split_seed is read by both prepare stages
        smk_expected = {**smk_expected, "prepare": 2}
        dvc_expected = dvc_expected | {"prepare_imagenet200", "prepare_cifar10"}
    undo = apply(ci_project)
    try:
        assert snakemake_jobs(ci_project) == smk_expected
        # `dvc repro --dry` names the stages whose own deps or params changed; what it then runs
        # is those plus everything downstream of them in `dvc dag`
        direct = dvc_stages_to_run(ci_project)
        _, edges = dvc_graph(ci_project)
        closure, frontier = set(direct), set(direct)
        while frontier:
            frontier = {b for a, b in edges if a in frontier} - closure
            closure |= frontier
        assert closure == dvc_expected
        assert direct and all(n.startswith(("prepare_", "train_")) for n in direct)
    finally:
        undo()
    assert snakemake_jobs(ci_project) == {}
    assert dvc_stages_to_run(ci_project) == set()


def test_dvc_command_reproduces_the_snakemake_training(ci_project, tmp_path):
    """dvc.yaml's command (no --threads) trains with the same TensorFlow thread count as the
    Snakemake job (--threads from the rule), so the same params give the same numbers in both
    engines; cifar_base_cnn also exercises the random flip and crop."""
    cmd = yaml.safe_load((ci_project / "dvc.yaml").read_text())["stages"]["train_cifar_base_cnn_s0"]["cmd"]
    assert "--threads" not in cmd
    out = tmp_path / "dvc-trained"
    run(cmd.replace("--out models/cifar_base_cnn/seed0", f"--out {out}").split(), ci_project, timeout=900)

    def numbers(model_dir):
        rows = (model_dir / "history.csv").read_text().splitlines()
        return [",".join(row.split(",")[:-1]) for row in rows]  # every column but the seconds

    assert numbers(out) == numbers(ci_project / "models/cifar_base_cnn/seed0")


def test_compare_runs_and_cross_engines(ci_project):
    run([*GIT, "add", "-A"], ci_project)
    run([*GIT, "commit", "-qm", "baseline results"], ci_project)
    # a variant through DVC experiments
    run(["dvc", "exp", "run", "-S", "alexnet32.epochs=2", "-n", "two-epochs"], ci_project, timeout=900)
    shown = run(["dvc", "exp", "show", "--csv"], ci_project).stdout
    metrics_path = stages.metrics_file("alexnet32", 0)
    assert "two-epochs" in shown and "alexnet32.epochs" in shown and f"{metrics_path}:top1" in shown
    diff = run(["dvc", "metrics", "diff", "--json"], ci_project).stdout
    changed = json.loads(diff)
    assert set(changed) == {metrics_path}, "only the retrained experiment's metrics change"
    assert changed[metrics_path]["epochs"] == {"old": 1, "new": 2, "diff": 1}
    assert changed[metrics_path]["loss"]["old"] != changed[metrics_path]["loss"]["new"]  # top-1 may tie; the loss moves
    history = yaml.safe_load((ci_project / stages.model_dir("alexnet32", 0) / "train.json").read_text())
    assert history["epochs"] == 2
    # DVC ran it: after `make sync` Snakemake agrees there is nothing to do
    run(["make", "-s", "sync", "STAMP="], ci_project)
    assert snakemake_jobs(ci_project) == {}
    plots = run(["dvc", "plots", "diff", "--out", "plots-html"], ci_project)
    page = (ci_project / "plots-html" / "index.html").read_text()
    assert "alexnet32 seed 0: learning curve" in page and "confusion matrix" in page, plots.stdout[-500:]
    # back to the committed results: checkout restores them from the cache, no retraining
    run(["git", "checkout", "--", "params.yaml", "dvc.lock"], ci_project)
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
    assert run(["dvc", "status", "--quiet"], clone, check=False).returncode == 0
    assert dvc_stages_to_run(clone) == set()
    assert snakemake_jobs(clone) == {}
