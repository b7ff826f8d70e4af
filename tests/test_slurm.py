"""The CI pipeline on a real single-node SLURM cluster through --profile profiles/slurm (the
session's ``ci_project`` run goes through SLURM where slurm-wlm is installed): every non-local
job is submitted with sbatch, and the outputs equal a local run's (every run's, byte for byte, in
test_pipeline.py's ``dvc repro`` of the same commit)."""

import os
import re

import pytest

from conftest import ROOT, run, slurm_installed
from imgclf import config, experiments, stages

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


def full_params(tmp_path) -> str:
    """params.yaml with the full profile laid over it, as the README runs the full reproduction."""
    out = tmp_path / "full-params.yaml"
    run(["imgclf", "params", "--profile", "full", "--out", str(out)], ROOT)
    return str(out)


def test_dry_run_of_the_full_reproduction_shows_gpu_requests(tmp_path):
    params_file = full_params(tmp_path)
    result = run(["snakemake", "--profile", "profiles/slurm", "--dry-run", "--configfile", params_file],
                 ROOT, env={**os.environ, "SBATCH_PARTITION": "gpu", "SBATCH_ACCOUNT": "lab"})
    blocks = result.stdout.split("\n\n")
    train_blocks = [b for b in blocks if "rule train:" in b]
    assert len(train_blocks) == len(experiments.EXPERIMENTS)
    for block in train_blocks:
        assert "gpu=1" in block and "cpus_per_gpu=4" in block and "slurm_partition=gpu" in block
        assert "slurm_account=lab" in block
    params = config.load(params_file)  # each training job asks for its own experiment's requests
    asked = {re.search(r"experiment=(\w+)", b).group(1): (int(re.search(r"runtime=(\d+)", b).group(1)),
                                                          int(re.search(r"mem_mb=(\d+)", b).group(1)))
             for b in train_blocks}
    assert asked == {name: (params[name]["runtime_min"], params[name]["mem_mb"]) for name in experiments.EXPERIMENTS}
    assert len(set(asked.values())) > 3  # config/full.yaml's per-experiment figures, not one default
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
