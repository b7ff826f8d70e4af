"""The pipeline learns: seed_cnn, with params.yaml's settings, through Snakemake on the embedded
sample (its own project, so it runs beside the shared CI pipeline under pytest-xdist)."""

import json

import pytest

from conftest import make_project, run
from imgclf import paths, report

pytestmark = pytest.mark.slow


def test_learning_signal_on_the_sample(tmp_path):
    """seed_cnn, with params.yaml's settings, reaches at least 10x chance (5 %) on the held-out
    split, on its own training images too, and nothing looks wrong (a model that learned nothing,
    or whose statistics are stale, scores about 0.5 %; reports/results.md has the three seeds)."""
    project = make_project(tmp_path / "p")
    target = paths.metrics_file("seed_cnn", 0)
    run(["snakemake", "--cores", "2", target], project, timeout=900)
    metrics = json.loads((project / target).read_text())
    assert metrics["chance_top1"] == pytest.approx(1 / 200)
    assert metrics["top1"] >= 10 * metrics["chance_top1"], metrics
    assert metrics["train_top1"] >= 10 * metrics["chance_top1"], metrics
    assert metrics["predicted_classes"] >= 50 and not report.flags(metrics), metrics
