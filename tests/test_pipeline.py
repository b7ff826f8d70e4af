"""The whole DAG on the CI config (every experiment, then the report) through Snakemake, the
rerun rules of both engines and the learning signal on the sample (resuming a killed run:
test_resume.py)."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from conftest import make_project, run, snakemake_jobs
from imgclf import config, experiments, stages

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
    for name, seed in stages.runs(config.load(ci_project / "params.yaml")):
        metrics = json.loads((ci_project / stages.metrics_file(name, seed)).read_text())
        assert all(isinstance(v, (int, float)) for v in metrics.values()), "metrics must be flat numbers"
        assert 0 <= metrics["top1"] <= metrics["top5"] <= 1 and 0 <= metrics["train_top1"] <= 1
        assert metrics["params"] > 0 and metrics["test_images"] > 0 and metrics["seed"] == seed
        assert f"| {name} |" in table
        assert (ci_project / f"reports/figures/confusion_{name}.png").stat().st_size > 1000
    for figure in ("learning_curves.png", "accuracy.png"):
        assert (ci_project / "reports/figures" / figure).stat().st_size > 1000
    assert rows["seed_cnn"]["params"] == str(795_000 - 102_600 + 512 * 20 + 20)  # the 200-class head, here 20 classes
    finetune = json.loads((ci_project / stages.metrics_file("cifar_densenet201_finetune", 0)).read_text())
    assert finetune["cv_folds"] == 2 and 0 <= finetune["cv_top1_mean"] <= 1
    assert (ci_project / stages.model_dir("autokeras", 0) / "trials.csv").exists()
    # two seeds of seed_cnn in CI's config: the row is their mean and sample std
    seeds = [json.loads((ci_project / stages.metrics_file("seed_cnn", s)).read_text())["top1"] for s in (0, 1)]
    assert rows["seed_cnn"]["seeds"] == "0 1" and rows["seed_cnn"]["n_seeds"] == "2"
    assert float(rows["seed_cnn"]["top1"]) == pytest.approx(sum(seeds) / 2)
    assert float(rows["seed_cnn"]["top1_std"]) == pytest.approx(abs(seeds[0] - seeds[1]) / 2 ** 0.5)
    assert " ± " in table.split("| seed_cnn |")[1].split("\n")[0]


def test_snakemake_html_report(ci_project):
    run(["snakemake", "--report", "reports/report.html"], ci_project, timeout=600)
    page = (ci_project / "reports/report.html").read_text(errors="replace")
    assert "results.md" in page and "learning_curves.png" in page


def test_nothing_to_do_after_a_run(ci_project):
    assert snakemake_jobs(ci_project) == {}


def test_learning_signal_on_the_sample(tmp_path):
    """seed_cnn, with params.yaml's settings, reaches at least 5x chance on the held-out split."""
    project = make_project(tmp_path / "p")
    target = stages.metrics_file("seed_cnn", 0)
    run(["snakemake", "--cores", "2", target], project, timeout=900)
    metrics = json.loads((project / target).read_text())
    assert metrics["chance_top1"] == pytest.approx(1 / 200)
    assert metrics["top1"] >= 5 * metrics["chance_top1"], metrics
