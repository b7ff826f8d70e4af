"""The pipeline learns: seed_cnn, with params.yaml's settings, through Snakemake on the embedded
sample (its own project, so it runs beside the shared CI pipeline under pytest-xdist)."""

import json

import pytest

from conftest import fault_env, make_project, run
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


@pytest.mark.parametrize("broken", ["frozen", "shuffled_labels"])
def test_a_model_that_learned_nothing_is_flagged(project, broken):
    """seed_cnn with test_learning_signal_on_the_sample's settings but for 2 epochs of its 8 (after
    which the intact model scores 3.9 % on the validation split, 7.8x chance: the committed run's
    reports/live/seed_cnn/seed0), broken on purpose by the fault harness
    (its weights put back after every batch, or its training labels shuffled): it sits near chance
    on both splits, and the check column says so."""
    from imgclf import config

    seed = {"frozen": 1, "shuffled_labels": 2}[broken]
    target = paths.metrics_file("seed_cnn", seed)
    run(["snakemake", "--cores", "2", target, "--config", f"seed_cnn={{seeds: [{seed}], epochs: 2}}"], project, timeout=900,
        env={**fault_env(), "IMGCLF_BREAK": broken})
    metrics = json.loads((project / target).read_text())
    assert metrics["top1"] <= 2 * metrics["chance_top1"] and metrics["train_top1"] <= 2 * metrics["chance_top1"], metrics
    params = config.load(project / "params.yaml", {"experiments": ["seed_cnn"], "seed_cnn.seeds": [seed]})
    flag = report.collect(project / "reports/metrics", params, project / "reports/eval").loc[0, "flag"]
    assert "chance on both splits" in flag, flag
