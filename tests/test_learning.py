"""The pipeline learns: seed_cnn, with params.yaml's settings, through Snakemake on the embedded
sample (its own project, so it runs beside the shared CI pipeline under pytest-xdist)."""

import json

import pytest

from conftest import make_project, run
from imgclf import paths, report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(module_tmp):
    return make_project(module_tmp / "p")


def test_learning_signal_on_the_sample(project):
    """seed_cnn's seed 0, with params.yaml's settings (200 classes: chance is 0.5 %), reaches at
    least 10x chance on the held-out split and on its own training images, predicts at least 50
    classes, and is not flagged (a model that learned nothing, or whose statistics are stale,
    scores about chance)."""
    target = paths.metrics_file("seed_cnn", 0)
    run(["snakemake", "--cores", "2", target], project, timeout=900)
    metrics = json.loads((project / target).read_text())
    assert metrics["chance_top1"] == pytest.approx(1 / 200)
    assert metrics["top1"] >= 10 * metrics["chance_top1"], metrics
    assert metrics["train_top1"] >= 10 * metrics["chance_top1"], metrics
    assert metrics["predicted_classes"] >= 50 and not report.flags(metrics), metrics


def test_a_collapsed_run_is_flagged(project):
    """The flag stays honest: seed_cnn_hwc sized as it must not be for 200 classes (3 epochs on 1,500
    images) collapses onto a few classes, and its row in the table says so."""
    from imgclf import config

    target = paths.metrics_file("seed_cnn_hwc", 1)
    run(["snakemake", "--cores", "2", target, "--config", "seed_cnn_hwc={epochs: 3, train_subset: 1500, seeds: [1]}"],
        project, timeout=900)
    params = config.load(project / "params.yaml", {"experiments": ["seed_cnn_hwc"], "seed_cnn_hwc.seeds": [1]})
    table = report.collect(project / "reports/metrics", params, project / "reports/eval")
    assert table.loc[0, "flag"].startswith("collapsed: "), table.loc[0, "flag"]
    row = next(line for line in report.markdown(table).splitlines() if line.startswith("| seed_cnn_hwc |"))
    assert "| ⚠ collapsed: " in row
