"""The CI pipeline on a real single-node SLURM cluster through --profile profiles/slurm (the
session's ``ci_project`` run goes through SLURM where slurm-wlm is installed): every non-local
job is submitted with sbatch, and the outputs equal a local run's (every run's, byte for byte, in
test_pipeline.py's second clean run; here one training and evaluation rerun from dvc.yaml's commands)."""

import os
import re

import pytest

from conftest import ROOT, run, slurm_installed
from imgclf import config, experiments, paths, stages

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


def test_ci_pipeline_went_through_slurm(ci_project):
    if not slurm_installed():
        pytest.skip("slurm-wlm and munge are not installed (bash .ci/slurm-cluster.sh install)")
    log = (ci_project / ".slurm-run.log").read_text()
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", log)
    runs = stages.runs(config.load(ci_project / "params.yaml"))
    assert len(runs) > len(experiments.EXPERIMENTS)  # CI's config has two seed_cnn seeds
    cluster_jobs = 2 + 2 * len(runs) + 1  # prepare x2, train + evaluate per (experiment, seed), report
    assert len(submitted) == cluster_jobs, log[-3000:]
    local_jobs = re.findall(r"^localrule (\w+):", log, re.M)
    assert sorted(set(local_jobs)) == ["all", "download", "sample"]
    slurm_logs = {p.stem: p for p in (ci_project / ".snakemake/slurm_logs").rglob("*.log")}
    assert set(slurm_logs) == set(submitted)
    # CI's config asks for one GPU for seed_cnn_hwc's training (the test cluster has one as a
    # generic resource): that job, and only that one, went to SLURM with the request
    gpu_jobs = set()
    for jobid in submitted:
        shown = run(["scontrol", "show", "job", jobid], ci_project).stdout
        if "gres:gpu" in shown:
            assert re.search(r"TresPerJob=gres:gpu:1\b", shown) and re.search(r"CpusPerTres=gres:gpu:1\b", shown), shown
            gpu_jobs.add(jobid)
    assert {str(slurm_logs[j]).split("slurm_logs/")[1].rsplit("/", 1)[0] for j in gpu_jobs} == {
        "rule_train/seed_cnn_hwc_0"}, gpu_jobs
    # every run's outputs equal a local run's, byte for byte (arrays, weights, figures):
    # test_pipeline.py::test_a_second_clean_run_leaves_every_tracked_file_byte_for_byte


def test_outputs_equal_a_local_run(ci_project, tmp_path):
    """One training and one evaluation (cifar_base_cnn, which also draws random flips and crops),
    rerun here from dvc.yaml's commands (no --threads: the experiment's own thread count), give
    the same weights and the same metrics as the session's pipeline run (through SLURM where
    slurm-wlm is installed, as in CI; through local Snakemake elsewhere)."""
    import json

    import keras
    import numpy as np

    train_cmd = dvc_command(ci_project, stages.run_stage("train", "cifar_base_cnn", 0))
    eval_cmd = dvc_command(ci_project, stages.run_stage("evaluate", "cifar_base_cnn", 0))
    assert "--threads" not in train_cmd
    model, metrics = paths.model_dir("cifar_base_cnn", 0), paths.metrics_file("cifar_base_cnn", 0)
    local_model, local_metrics = tmp_path / "model", tmp_path / "metrics.json"
    live, confusion = paths.live_dir("cifar_base_cnn", 0), paths.confusion_file("cifar_base_cnn", 0)
    tensorboard, details = paths.tensorboard_dir("cifar_base_cnn", 0), paths.eval_dir("cifar_base_cnn", 0)
    train_cmd = (train_cmd.replace(f"--out {model}", f"--out {local_model}").replace(f"--live {live}", f"--live {tmp_path / 'live'}")
                 .replace(f"--tensorboard {tensorboard}", f"--tensorboard {tmp_path / 'tb'}"))
    eval_cmd = (eval_cmd.replace(f"--model {model}", f"--model {local_model}")
                .replace(f"--metrics {metrics}", f"--metrics {local_metrics}")
                .replace(f"--confusion {confusion}", f"--confusion {tmp_path / 'confusion.csv'}")
                .replace(f"--out {details}", f"--out {tmp_path / 'eval'}"))
    # every output goes to tmp_path: the session's pipeline results stay as they are
    assert not any(path in train_cmd for path in (model, live, tensorboard)), train_cmd
    assert not any(path in eval_cmd for path in (model, metrics, details, confusion)), eval_cmd
    run(train_cmd.split(), ci_project, timeout=900)
    run(eval_cmd.split(), ci_project, timeout=900)

    def weights(directory):
        return [w.numpy() for w in keras.models.load_model(directory / "model.keras", compile=False).weights]

    ours, theirs = weights(local_model), weights(ci_project / model)
    assert len(ours) == len(theirs) and all(np.array_equal(a, b) for a, b in zip(ours, theirs))

    def numbers(path):
        return {k: v for k, v in json.loads(path.read_text()).items() if "second" not in k}

    assert numbers(local_metrics) == numbers(ci_project / metrics)
    assert (tmp_path / "confusion.csv").read_bytes() == (ci_project / confusion).read_bytes()
    # and the same per-epoch log, byte for byte
    assert [p.read_bytes() for p in sorted((tmp_path / "live").rglob("*.tsv"))] == \
        [p.read_bytes() for p in sorted((ci_project / live).rglob("*.tsv"))] != []


def dvc_command(project, name) -> str:
    """A stage's command as DVC runs it: dvc.yaml's ``foreach`` expanded over config/runs.yaml."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        return next(stage.cmd for stage in repo.index.stages if stage.name == name)


def full_params(tmp_path) -> str:
    """params.yaml with the full profile laid over it, as the README runs the full reproduction."""
    out = tmp_path / "full-params.yaml"
    run(["imgclf", "params", "--profile", "full", "--out", str(out)], ROOT)
    return str(out)


def test_dry_run_of_the_full_reproduction_shows_gpu_requests(tmp_path):
    result = run(["snakemake", "--profile", "profiles/slurm", "--dry-run", "--configfile", full_params(tmp_path)],
                 ROOT, env={**os.environ, "SBATCH_PARTITION": "gpu", "SBATCH_ACCOUNT": "lab"})
    blocks = result.stdout.split("\n\n")
    train_blocks = [b for b in blocks if "rule train:" in b]
    assert len(train_blocks) == len(experiments.EXPERIMENTS)
    for block in train_blocks:
        assert "gpu=1" in block and "cpus_per_gpu=4" in block and "slurm_partition=gpu" in block
        assert "slurm_account=lab" in block
    runtimes = {int(m) for m in re.findall(r"runtime=(\d+)", "\n".join(train_blocks))}
    assert len(runtimes) > 3  # per experiment, from params
    for block in blocks:
        if "rule evaluate:" in block or "rule prepare:" in block:
            assert "gpu=" not in block


def test_a_multi_gpu_experiment_asks_slurm_for_its_gpus(tmp_path):
    """gpus: 2 (here as a --config override) gives the training job gpu=2, which the plugin turns
    into sbatch --gpus=2; the other experiments keep their one GPU."""
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    result = run(["snakemake", "--profile", "profiles/slurm", "--dry-run", "--configfile", full_params(tmp_path),
                  "--config", "densenet161={gpus: 2}"], ROOT)
    train_blocks = [b for b in result.stdout.split("\n\n") if "rule train:" in b]
    two = [b for b in train_blocks if "experiment=densenet161" in b]
    assert two and all("gpu=2" in b for b in two), two
    assert all("gpu=1" in b for b in train_blocks if b not in two)

    class Job:
        resources = type("Resources", (dict,), {"__getattr__": dict.get})(gpu=2)

    assert set_gres_string(Job()).strip() == "--gpus=2"
