"""The committed results hold together and rerun bit for bit. Every file of the committed run that
git holds is the one dvc.lock records, and the README's table is the report of the committed
metrics. Two runs of it (seed_cnn seed 0, cifar_base_cnn seed 0), rerun in a fresh copy of the
project with params.yaml as committed, give every file under reports/ that git holds for them byte
for byte (timings are not among them), on a CPU of the model and instruction sets that made them
(params.yaml leaves oneDNN's instruction set uncapped, so AVX-512 or its absence changes the
numbers); environment.json is then the committed one."""

import json
import os
import subprocess

import pytest

from conftest import ROOT, file_hashes, make_project, run
from imgclf import config, paths, report, runtime, stages

RUNS = (("seed_cnn", 0), ("cifar_base_cnn", 0))


def committed_cpu() -> dict:
    """The CPU model and the instruction sets the committed runs were made with."""
    cpus = {tuple(json.loads((ROOT / paths.eval_dir(name, seed) / "environment.json").read_text())[key]
                  for key in ("cpu_model", "cpu_flags")) for name, seed in RUNS}
    assert len(cpus) == 1, cpus  # one run made the committed table
    return dict(zip(("cpu_model", "cpu_flags"), cpus.pop()))


def test_dvc_lock_records_the_committed_files():
    """Each output that dvc.lock records and git holds (the resolved params; every run's metrics,
    eval and live files) hashes, by DVC's own reckoning, to what dvc.lock says."""
    from dvc.repo import Repo

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    repo = Repo(str(ROOT))
    checked, differ = set(), []
    for stage in repo.index.stages:
        for out in stage.outs:
            path = os.path.relpath(out.fs_path, repo.root_dir)
            if not out.use_cache:
                assert path in tracked or any(name.startswith(path + "/") for name in tracked), f"{path}: not in git"
                checked.add(path)
                if out.get_hash() != out.hash_info:
                    differ.append(path)
    assert not differ, f"dvc.lock records other content for {differ}"
    for name, seed in stages.runs(config.load(ROOT / "params.yaml")):
        assert {paths.metrics_file(name, seed), paths.eval_dir(name, seed), paths.confusion_file(name, seed)} <= checked


def test_the_readmes_table_is_the_report_of_the_committed_metrics():
    params = config.load(ROOT / "params.yaml")
    table = report.markdown(report.collect(ROOT / "reports/metrics", params, ROOT / "reports/eval"))
    assert table in (ROOT / "README.md").read_text()


@pytest.mark.slow
def test_committed_results_rerun_bit_for_bit(tmp_path):
    recorded, here = committed_cpu(), runtime.cpu_description()
    if recorded != here:  # one model name covers virtual machines with and without AVX-512
        pytest.skip(f"the committed results were made on {recorded}; this machine is {here}")
    project = make_project(tmp_path)  # reports/ left out: every file compared is made here
    assert not (project / "reports/metrics").exists()
    run(["snakemake", "--cores", "2", *(paths.metrics_file(name, seed) for name, seed in RUNS)], project, timeout=1800)
    for name, seed in RUNS:
        for directory in (paths.eval_dir(name, seed), paths.live_dir(name, seed)):
            committed, made = file_hashes(ROOT, directory), file_hashes(project, directory)
            assert len(committed) >= 4 and made == committed, directory
        for file in (paths.metrics_file(name, seed), paths.confusion_file(name, seed)):
            assert (project / file).read_bytes() == (ROOT / file).read_bytes(), file
