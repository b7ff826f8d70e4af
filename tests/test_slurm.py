"""The CI pipeline on a real single-node SLURM cluster through --profile profiles/slurm (the
session's ``ci_project`` run goes through SLURM where slurm-wlm is installed): every non-local
job is submitted with sbatch, and the outputs equal a local run's."""

import os
import re

import pytest

from conftest import ROOT, file_hashes, load_params, make_project, run, slurm_installed
from imgclf import config, experiments, stages

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


def test_ci_pipeline_went_through_slurm(ci_project, tmp_path):
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
    slurm_logs = {p.stem for p in (ci_project / ".snakemake/slurm_logs").rglob("*.log")}
    assert slurm_logs == set(submitted)
    # outputs equal a local run's: the same arrays, and every experiment's metrics
    local = make_project(tmp_path / "local", load_params("config/ci.yaml"))
    run(["snakemake", "--cores", "2", "data/prepared/imagenet200", "data/prepared/cifar10"], local)
    assert file_hashes(ci_project, "data/prepared") == file_hashes(local, "data/prepared")
    for name, seed in runs:
        assert (ci_project / stages.metrics_file(name, seed)).exists()
        assert (ci_project / stages.model_dir(name, seed) / "model.keras").exists()


def test_dry_run_of_the_full_reproduction_shows_gpu_requests():
    result = run(["snakemake", "--profile", "profiles/slurm", "--dry-run", "--configfile", "config/full.yaml"],
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
