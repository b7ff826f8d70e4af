"""The whole DAG on the CI config (every experiment, then the report) through Snakemake: every
number of the report against the metrics files, the transfer backbone against experiment 4's
(the learning signal: test_learning.py; resuming a killed run: test_resume.py)."""

import csv
import json
import re
from pathlib import Path

import pytest

from conftest import ROOT, file_hashes, run, snakemake_jobs
from imgclf import config, experiments, paths, stages

pytestmark = pytest.mark.slow
EXPERIMENTS = list(experiments.EXPERIMENTS)
# CI's sizes for the paper's CNN and its channels-last variant (6 and 3 epochs on 720 images of 20
# classes) may leave half of their predictions on one class: the check column may flag them, as collapsed
CI_COLLAPSED = {"seed_cnn", "seed_cnn_hwc"}
# the ci DAG with three seeds of every experiment (`python bench/real_data.py --profile ci --seeds 0 1 2`):
# each experiment must keep half of its lowest margin over chance there, on the test split and on
# its training images
LEARNING_RECORD = ROOT / "bench" / "records" / "ci-2026-12-07"
MARGIN = 0.5


def learning_floors(record: Path = LEARNING_RECORD) -> dict[str, tuple[float, float]]:
    """Experiment -> (test, train) top-1 over chance that a ci run must reach: chance plus ``MARGIN``
    times the lowest excess over chance among the record's seeds."""
    ratios: dict[str, list[tuple[float, float]]] = {}
    for path in sorted((record / "metrics").glob("*/seed*.json")):
        metrics = json.loads(path.read_text())
        ratios.setdefault(path.parent.name, []).append(
            (metrics["top1"] / metrics["chance_top1"], metrics["train_top1"] / metrics["chance_top1"]))
    return {name: (1 + MARGIN * (min(t for t, _ in seeds) - 1), 1 + MARGIN * (min(r for _, r in seeds) - 1))
            for name, seeds in ratios.items()}
COLLAPSED = re.compile(r"(seed \d+: )?collapsed: \d+% of test predictions are one class")


def checks(table: str) -> dict[str, str]:
    """Experiment -> its cell in the check column of results.md's table."""
    rows = [line[2:-2].split(" | ") for line in table.splitlines() if line.startswith("| ")]
    column = rows[0].index("check")
    return {cells[0]: cells[column] for cells in rows[1:]}


def test_every_experiment_reaches_the_report(ci_project):
    with open(ci_project / "reports/results.csv") as handle:
        rows = {row["experiment"]: row for row in csv.DictReader(handle)}
    assert list(rows) == EXPERIMENTS
    table = (ci_project / "reports/results.md").read_text()
    for name, seed in stages.runs(config.load(ci_project / "params.yaml")):
        metrics = json.loads((ci_project / paths.metrics_file(name, seed)).read_text())
        assert all(isinstance(v, (int, float)) for v in metrics.values()), "metrics must be flat numbers"
        assert 0 <= metrics["top1"] <= metrics["top5"] <= 1 and 0 <= metrics["train_top1"] <= 1
        assert metrics["params"] > 0 and metrics["test_images"] > 0 and metrics["seed"] == seed
        assert f"| {name} |" in table
        assert (ci_project / f"reports/figures/confusion_{name}.png").stat().st_size > 1000
    for figure in ("learning_curves.png", "accuracy.png"):
        assert (ci_project / "reports/figures" / figure).stat().st_size > 1000
    checked = checks(table)
    assert list(checked) == EXPERIMENTS
    unflagged = [name for name in EXPERIMENTS if name not in CI_COLLAPSED]
    assert {name: (checked[name], rows[name]["flag"]) for name in unflagged} == dict.fromkeys(unflagged, ("ok", ""))
    for name in CI_COLLAPSED:  # flagged as collapsed, if at all, and for nothing else
        flagged, problems = checked[name].startswith("⚠ "), checked[name].removeprefix("⚠ ").split("; ")
        assert checked[name] == "ok" or flagged and all(map(COLLAPSED.fullmatch, problems)), checked[name]
    assert rows["seed_cnn"]["params"] == str(795_000 - 102_600 + 512 * 20 + 20)  # the 200-class head, here 20 classes
    finetune = json.loads((ci_project / paths.metrics_file("cifar_densenet201_finetune", 0)).read_text())
    assert finetune["cv_folds"] == 2 and 0 <= finetune["cv_top1_mean"] <= 1
    assert (ci_project / paths.model_dir("autokeras", 0) / "trials.csv").exists()
    # two seeds of seed_cnn in CI's config: the row is their mean and sample std
    seeds = [json.loads((ci_project / paths.metrics_file("seed_cnn", s)).read_text())["top1"] for s in (0, 1)]
    assert rows["seed_cnn"]["seeds"] == "0 1" and rows["seed_cnn"]["n_seeds"] == "2"
    assert float(rows["seed_cnn"]["top1"]) == pytest.approx(sum(seeds) / 2)
    assert float(rows["seed_cnn"]["top1_std"]) == pytest.approx(abs(seeds[0] - seeds[1]) / 2 ** 0.5)
    assert " ± " in table.split("| seed_cnn |")[1].split("\n")[0]


def test_every_experiment_learns(ci_project):
    """Every run of the ci DAG reaches its experiment's floors on both splits (``learning_floors``:
    half of the lowest margin over chance of three seeds in the record), so it scores above chance."""
    floors = learning_floors()
    assert set(floors) == set(EXPERIMENTS) and all(len(list((LEARNING_RECORD / "metrics" / name).glob("seed*.json"))) == 3
                                                   for name in EXPERIMENTS)
    below = {}
    for name, seed in stages.runs(config.load(ci_project / "params.yaml")):
        metrics = json.loads((ci_project / paths.metrics_file(name, seed)).read_text())
        test, train = metrics["top1"] / metrics["chance_top1"], metrics["train_top1"] / metrics["chance_top1"]
        if not (test >= floors[name][0] and train >= floors[name][1]):
            below[f"{name} seed {seed}"] = (round(test, 2), round(train, 2), floors[name])
    assert not below, f"test and train top-1 over chance, against the floors: {below}"


def test_results_table_carries_the_metrics_files(ci_project):
    """Every number of results.csv and results.md, per experiment, against the metrics files the
    evaluate stages wrote (means over seeds, sample std, percent with two decimals)."""
    with open(ci_project / "reports/results.csv") as handle:
        rows = {row["experiment"]: row for row in csv.DictReader(handle)}
    lines = {line.split(" | ")[0][2:]: line.split(" | ") for line in
             (ci_project / "reports/results.md").read_text().splitlines() if line.startswith("| ") and " | " in line}
    params = config.load(ci_project / "params.yaml")
    for name in EXPERIMENTS:
        seeds = params[name]["seeds"]
        metrics = [json.loads((ci_project / paths.metrics_file(name, s)).read_text()) for s in seeds]
        cells = lines[name]
        for key, column in (("top1", 3), ("train_top1", 4), ("top5", 5)):
            values = [m[key] for m in metrics]
            mean = sum(values) / len(values)
            assert float(rows[name][key]) == pytest.approx(mean, abs=1e-12), (name, key)
            text = f"{100 * mean:.2f}"
            if len(values) > 1:
                std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
                text += f" ± {100 * std:.2f}"
            assert cells[column] == text, (name, key, cells)
        assert float(rows[name]["loss"]) == pytest.approx(sum(m["loss"] for m in metrics) / len(metrics), abs=1e-12)
        assert int(rows[name]["params"]) == metrics[0]["params"] and cells[9] == f"{metrics[0]['params'] / 1e6:.3f}"
        assert cells[7] == f"{100 * metrics[0]['chance_top1']:.2f}"


def test_transfer_starts_from_experiment_4s_densenet201(ci_project):
    """The transfer model's frozen backbone is DenseNet-201 as experiment 4 trained it, weight for
    weight (statistics included); fine-tuning starts from the transfer model and changes only the
    layers it opens."""
    import keras
    import numpy as np

    def backbone(name):
        model = keras.models.load_model(ci_project / paths.model_dir(name, 0) / "model.keras", compile=False)
        return {w.path: w.numpy() for w in model.get_layer("densenet201").weights}

    trained, transferred = backbone("densenet201"), backbone("cifar_densenet201_transfer")
    assert len(trained) > 600 and trained.keys() == transferred.keys()
    assert all(np.array_equal(trained[path], transferred[path]) for path in trained)
    fresh = keras.applications.DenseNet201(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    assert not np.array_equal(fresh.get_layer("conv1_conv").kernel.numpy(), trained["conv1_conv/kernel"])
    tuned = backbone("cifar_densenet201_finetune")  # CI's unfreeze_from: conv5_block1_
    changed = {path.split("/")[0] for path in trained if not np.array_equal(trained[path], tuned[path])}
    assert any(layer.endswith("_conv") for layer in changed)
    assert all(layer.startswith("conv5_") and not layer.endswith("_bn") for layer in changed), sorted(changed)


def test_nothing_to_do_after_a_run(ci_project):
    assert snakemake_jobs(ci_project) == {}


def _tracked(project) -> dict[str, bytes]:
    """Every file git tracks or would track in ``project`` (results files included), and dvc.lock."""
    names = run(["git", "ls-files", "-co", "--exclude-standard"], project).stdout.split()
    return {name: (project / name).read_bytes() for name in names
            if (project / name).is_file() and name != ".slurm-run.log"}  # run_pipeline's SLURM log


def test_dvc_repro_of_the_same_commit_writes_every_tracked_file_byte_for_byte(ci_project, tmp_path):
    """Both engines on every experiment: ``dvc repro`` of the same commit in a fresh clone runs every
    stage of the ci DAG and writes every tracked file as the Snakemake run did, byte for byte: each
    model's weights (dvc.lock holds each model directory's hash, and is itself equal), every metrics,
    evaluation and per-epoch file, and the results table. Results files hold results only (timings
    go to logs/, models are saved without dates or addresses). Where the Snakemake run went through
    SLURM (CI), the two executors agree as well. DVC has nothing left to do in either project."""
    from conftest import load_params, make_project

    second = make_project(tmp_path / "dvc", load_params("config/ci.yaml"))
    run(["dvc", "repro"], second, timeout=2400)
    first, again = _tracked(ci_project), _tracked(second)
    assert "dvc.lock" in first and any(name.startswith("reports/metrics/") for name in first)
    trained = {path.parent.parent.name for path in (second / "models").glob("*/seed*/model.keras")}
    assert trained == set(EXPERIMENTS)  # DVC ran every experiment
    assert sorted(again) == sorted(first)
    assert [name for name in first if first[name] != again[name]] == []
    assert file_hashes(second, "models") == file_hashes(ci_project, "models")  # outside git: cache: false or DVC-tracked
    for project in (ci_project, second):
        assert "up to date" in run(["dvc", "status"], project).stdout
    timings = second / paths.timings_file("seed_cnn", 0, "train")
    assert json.loads(timings.read_text())["train_seconds"] > 0  # the timings are kept, outside git and DVC
