"""The whole DAG on the CI config (every experiment, then the report) through Snakemake, the
rerun rules of both engines, the learning signal on the sample, and resuming a killed run."""

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import load_params, make_project, run, snakemake_jobs
from imgclf import experiments

pytestmark = pytest.mark.slow
EXPERIMENTS = list(experiments.EXPERIMENTS)


def edit_params(project: Path, section: str, key: str, value) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params[section][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def test_every_experiment_reaches_the_report(ci_project):
    with open(ci_project / "reports/results.csv") as handle:
        rows = {row["experiment"]: row for row in csv.DictReader(handle)}
    assert list(rows) == EXPERIMENTS
    table = (ci_project / "reports/results.md").read_text()
    for name in EXPERIMENTS:
        metrics = json.loads((ci_project / f"reports/metrics/{name}.json").read_text())
        assert all(isinstance(v, (int, float)) for v in metrics.values()), "metrics must be flat numbers"
        assert 0 <= metrics["top1"] <= metrics["top5"] <= 1
        assert metrics["params"] > 0 and metrics["test_images"] > 0
        assert f"| {name} |" in table
        assert (ci_project / f"reports/figures/confusion_{name}.png").stat().st_size > 1000
    for figure in ("learning_curves.png", "accuracy.png"):
        assert (ci_project / "reports/figures" / figure).stat().st_size > 1000
    assert rows["seed_cnn"]["params"] == str(795_000 - 102_600 + 512 * 20 + 20)  # the 200-class head, here 20 classes
    finetune = json.loads((ci_project / "reports/metrics/cifar_densenet201_finetune.json").read_text())
    assert finetune["cv_folds"] == 2 and 0 <= finetune["cv_top1_mean"] <= 1
    assert (ci_project / "models/autokeras/trials.csv").exists()


def test_snakemake_html_report(ci_project):
    run(["snakemake", "--report", "reports/report.html"], ci_project, timeout=600)
    page = (ci_project / "reports/report.html").read_text(errors="replace")
    assert "results.md" in page and "learning_curves.png" in page


def test_nothing_to_do_after_a_run(ci_project):
    assert snakemake_jobs(ci_project) == {}


def test_learning_signal_on_the_sample(tmp_path):
    """seed_cnn, with params.yaml's settings, reaches at least 5x chance on the held-out split."""
    project = make_project(tmp_path / "p")
    run(["snakemake", "--cores", "2", "reports/metrics/seed_cnn.json"], project, timeout=900)
    metrics = json.loads((project / "reports/metrics/seed_cnn.json").read_text())
    assert metrics["chance_top1"] == pytest.approx(1 / 200)
    assert metrics["top1"] >= 5 * metrics["chance_top1"], metrics


def test_killed_training_resumes_from_its_last_epoch(tmp_path, small_tiny_zip):
    params = load_params()
    params["data"]["imagenet200"]["n_classes"] = 12
    params["seed_cnn"].update(epochs=25, batch_size=8)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run(["imgclf", "prepare", "imagenet200", "--source", str(small_tiny_zip), "--out", "data", "--threads", "1"], tmp_path)
    command = ["imgclf", "train", "seed_cnn", "--data", "data", "--out", "model", "--threads", "1"]
    history = tmp_path / ".resume/seed_cnn/history.csv"
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while time.time() < deadline and first.poll() is None:
            if history.exists() and len(history.read_text().splitlines()) >= 4:  # header + 3 epochs
                break
            time.sleep(0.05)
        assert first.poll() is None, "training finished before it could be killed"
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    done = len(history.read_text().splitlines()) - 1
    assert not (tmp_path / "model").exists(), "a killed run must not leave a model that looks complete"
    second = run(command, tmp_path)
    epochs = [int(line.split()[1].split("/")[0]) for line in second.stdout.splitlines() if line.startswith("Epoch ")]
    assert epochs[0] in (done, done + 1) and epochs[0] > 1, (done, epochs[:3])
    assert epochs[-1] == 25
    with open(tmp_path / "model/history.csv") as handle:
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == list(range(1, 26))
    assert not (tmp_path / ".resume/seed_cnn").exists()
