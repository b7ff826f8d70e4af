"""The evaluate and report cores against hand-computed values: top-k scores, the prediction
spread, the sanity flags, and mean ± std over seeds in results.csv and results.md."""

import csv
import json

import numpy as np
import pytest

from conftest import ROOT
from imgclf import config, evaluate, experiments, report


def test_scores_by_hand():
    probabilities = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5], [0.4, 0.35, 0.25]])
    labels = np.array([1, 2, 0, 1])
    result = evaluate.scores(probabilities, labels)
    assert result["top1"] == pytest.approx(1 / 4)  # only the first image's argmax is right
    assert result["top5"] == pytest.approx(1.0)  # k = 3 classes: every label is in the top 3
    assert result["loss"] == pytest.approx(-np.mean(np.log([0.6, 0.3, 0.2, 0.35])))


def test_prediction_spread():
    assert evaluate.prediction_spread(np.array([3, 3, 3, 1]), 5) == {"predicted_classes": 2, "top_class_share": 0.75}


def _metrics(top1, train_top1, share, chance=1 / 200):
    return {"top1": top1, "train_top1": train_top1, "top_class_share": share, "chance_top1": chance}


@pytest.mark.parametrize("metrics, expected", [
    (_metrics(0.15, 0.40, 0.05), []),
    (_metrics(0.01, 0.40, 0.05), ["chance on test"]),  # 2x chance on test, 80x on train
    (_metrics(0.011, 0.40, 0.05), []),  # just above 2x chance
    (_metrics(0.01, 0.049, 0.05), []),  # train top-1 below 10x chance: nothing learned, nothing odd
    (_metrics(0.10, 0.20, 0.93), ["collapsed"]),
    (_metrics(0.10, 0.99, 0.97, chance=0.1), ["collapsed", "chance on test"]),  # 10 classes: halfway rule
    (_metrics(0.55, 0.60, 0.50, chance=0.5), []),  # 2 classes: half the predictions on one is normal
])
def test_flags(metrics, expected):
    found = report.flags(metrics)
    assert [text.split(":")[0].split(" (")[0] for text in found] == expected, found


def test_report_aggregates_seeds_and_flags(tmp_path):
    params = config.load(ROOT / "params.yaml")
    params["seed_cnn"]["seeds"] = [0, 4]
    base = {"top5": 0.5, "loss": 2.0, "train_top5": 0.6, "train_loss": 1.5, "chance_top1": 0.005, "params": 795000,
            "epochs": 3, "train_images": 100, "train_seconds": 10.0, "train_images_per_second": 30.0,
            "top_class_share": 0.05}
    for name in experiments.EXPERIMENTS:
        for seed in params[name]["seeds"]:
            values = {**base, "top1": 0.1, "train_top1": 0.2}
            if name == "seed_cnn":
                values.update(top1=[0.10, 0.14][seed // 4], train_top1=0.3, loss=[2.0, 3.0][seed // 4])
            if name == "densenet121":
                values.update(top1=0.005, train_top1=0.9, top_class_share=1.0)
            path = tmp_path / "metrics" / name / f"seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
    table = report.collect(tmp_path / "metrics", params)
    row = table.set_index("experiment").loc["seed_cnn"]
    assert row["seeds"] == "0 4" and row["n_seeds"] == 2
    assert row["top1"] == pytest.approx(0.12) and row["top1_std"] == pytest.approx(np.std([0.10, 0.14], ddof=1))
    assert row["loss"] == pytest.approx(2.5) and row["flag"] == ""
    flagged = table.set_index("experiment").loc["densenet121"]["flag"]
    assert "collapsed" in flagged and "chance on test" in flagged
    text = report.markdown(table)
    seed_line = next(line for line in text.splitlines() if line.startswith("| seed_cnn |"))
    assert "| 12.00 ± 2.83 | 30.00 ± 0.00 |" in seed_line and "| ok |" in seed_line
    densenet_line = next(line for line in text.splitlines() if line.startswith("| densenet121 |"))
    assert "⚠ collapsed" in densenet_line
    assert "| 25.02 | 7.71 |" in densenet_line  # the paper's figure as printed, not 1 - x
    missing = tmp_path / "metrics" / "seed_cnn" / "seed4.json"
    missing.unlink()
    with pytest.raises(Exception, match="seed_cnn/seed4.json: metrics missing"):
        report.collect(tmp_path / "metrics", params)


def test_results_csv_matches_the_metrics_files(tmp_path):
    """The CSV the report writes carries the metrics files' numbers (here through the csv module,
    as a user reading results.csv would)."""
    params = config.load(ROOT / "config/ci.yaml")
    rng = np.random.default_rng(0)
    expected = {}
    for name in experiments.EXPERIMENTS:
        values = []
        for seed in params[name]["seeds"]:
            top1 = float(rng.uniform(0.1, 0.9))
            values.append(top1)
            path = tmp_path / "metrics" / name / f"seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"top1": top1, "top5": 0.95, "loss": 1.0, "train_top1": top1, "chance_top1": 0.05,
                                        "params": 1, "epochs": 1, "train_images": 1, "train_seconds": 1.0,
                                        "top_class_share": 0.1}))
        expected[name] = np.mean(values)
    table = report.collect(tmp_path / "metrics", params)
    (tmp_path / "results.csv").write_text(table.to_csv(index=False))
    with open(tmp_path / "results.csv") as handle:
        rows = {row["experiment"]: float(row["top1"]) for row in csv.DictReader(handle)}
    assert rows == pytest.approx(expected)
