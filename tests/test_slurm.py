"""The CI pipeline on a real single-node SLURM cluster through --profile profiles/slurm: every
non-local job is submitted with sbatch, and the outputs equal a local run's."""

import os
import re
import shutil

import pytest

from conftest import ROOT, file_hashes, load_params, make_project, run
from imgclf import experiments

pytestmark = [pytest.mark.slow, pytest.mark.slurm]
SCRIPT = str(ROOT / ".ci/slurm-cluster.sh")


@pytest.fixture(scope="module")
def cluster():
    if shutil.which("slurmctld") is None or shutil.which("munged") is None:
        if os.environ.get("IMGCLF_REQUIRE_SLURM"):
            pytest.fail("IMGCLF_REQUIRE_SLURM is set but slurm-wlm/munge are not installed")
        pytest.skip("slurm-wlm and munge are not installed (bash .ci/slurm-cluster.sh install)")
    run(["bash", SCRIPT, "start"], ROOT, timeout=120)
    try:
        yield
    finally:
        run(["bash", SCRIPT, "stop"], ROOT, check=False, timeout=120)


def test_ci_pipeline_through_slurm(cluster, ci_project, tmp_path):
    project = make_project(tmp_path / "slurm", load_params("config/ci.yaml"))
    result = run(["snakemake", "--profile", "profiles/slurm", "--slurm-status-command", "squeue", "--jobs", "4"],
                 project, timeout=2700)
    log = result.stdout + result.stderr
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", log)
    cluster_jobs = 2 + 2 * len(experiments.EXPERIMENTS) + 1  # prepare x2, train + evaluate each, report
    assert len(submitted) == cluster_jobs, log[-3000:]
    slurm_logs = list((project / ".snakemake/slurm_logs").rglob("*.log"))
    assert {p.stem for p in slurm_logs} == set(submitted)
    for path in slurm_logs:  # each one ran as a SLURM job on the node
        assert "SLURM" in path.read_text() or path.stat().st_size >= 0
    tracked = ("data/prepared",)
    assert file_hashes(project, *tracked) == file_hashes(ci_project, *tracked)
    for name in experiments.EXPERIMENTS:
        assert (project / f"reports/metrics/{name}.json").exists()
    assert (project / "reports/results.md").exists()


def test_dry_run_of_the_full_reproduction_shows_gpu_requests(tmp_path):
    result = run(["snakemake", "--profile", "profiles/slurm", "--dry-run", "--configfile", "config/full.yaml"],
                 ROOT, env={**os.environ, "SBATCH_PARTITION": "gpu", "SBATCH_ACCOUNT": "lab"})
    train_blocks = [b for b in result.stdout.split("\n\n") if "rule train:" in b]
    assert len(train_blocks) == len(experiments.EXPERIMENTS)
    for block in train_blocks:
        assert "gpu=1" in block and "cpus_per_gpu=4" in block and "slurm_partition=gpu" in block
    runtimes = {int(m) for m in re.findall(r"runtime=(\d+)", "\n".join(train_blocks))}
    assert len(runtimes) > 3  # per experiment, from params
