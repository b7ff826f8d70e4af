"""The evaluate and report cores against hand-computed values: top-k scores, the prediction
spread, the sanity flags, and mean ± std over seeds in results.csv and results.md."""

import csv
import json
import re

import numpy as np
import pytest

from conftest import ROOT, load_params
from imgclf import config, evaluate, experiments, paper, report
from imgclf.errors import PipelineError


def test_scores_by_hand():
    probabilities = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5], [0.4, 0.35, 0.25]])
    labels = np.array([1, 2, 0, 1])
    result = evaluate.scores(probabilities, labels)
    assert result["top1"] == pytest.approx(1 / 4)  # only the first image's argmax is right
    assert result["top5"] == pytest.approx(1.0)  # k = 3 classes: every label is in the top 3
    assert result["loss"] == pytest.approx(-np.mean(np.log([0.6, 0.3, 0.2, 0.35])))


def test_scores_refuse_mismatched_or_broken_predictions():
    good = np.full((3, 4), 0.25)
    with pytest.raises(PipelineError, match=r"^predictions of shape \(3, 4\) do not match 2 labels$"):
        evaluate.scores(good, np.array([0, 1]))
    with pytest.raises(PipelineError, match=r"^predictions of shape \(12,\) do not match 12 labels$"):
        evaluate.scores(good.ravel(), np.arange(12) % 4)
    broken = good.copy()
    broken[1, 2] = np.nan
    with pytest.raises(PipelineError, match=r"^the model predicts NaN or infinite values$"):
        evaluate.scores(broken, np.array([0, 1, 2]))


def test_per_class_accuracy_by_hand():
    confusion = np.array([[3, 1, 0, 0], [0, 0, 0, 0], [2, 2, 4, 0], [0, 0, 0, 1]])  # rows: actual class
    result = evaluate.per_class_accuracy(confusion)  # class 1 has no test image, class 3 one
    assert result[0] == pytest.approx(0.75) and np.isnan(result[1]) and result[2] == pytest.approx(0.5) and result[3] == 1


def test_loss_of_a_zero_probability_is_finite():
    probabilities = np.array([[1.0, 0.0], [0.5, 0.5]])
    result = evaluate.scores(probabilities, np.array([1, 0]))
    assert result["loss"] == pytest.approx((-np.log(1e-7) - np.log(0.5)) / 2)


def test_prediction_spread():
    assert evaluate.prediction_spread(np.array([3, 3, 3, 1]), 5) == {"predicted_classes": 2, "top_class_share": 0.75}


def _recorded(root, params, source=None):
    """Each selected run's eval directory with the prepared data's record of its source (``data.json``,
    as evaluate copies it): params' source, or ``source``."""
    for name in experiments.selected(params):
        named = params["data"][experiments.EXPERIMENTS[name].dataset]["source"]
        for seed in params[name]["seeds"]:
            path = root / "eval" / name / f"seed{seed}" / "data.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"source": source or named, "image_size": 32}))
    return root / "eval"


def _metrics(top1, train_top1, share, chance=1 / 200):
    return {"top1": top1, "train_top1": train_top1, "top_class_share": share, "chance_top1": chance}


@pytest.mark.parametrize("metrics, expected", [
    (_metrics(0.15, 0.40, 0.05), []),
    (_metrics(0.01, 0.40, 0.05), ["chance on test"]),  # 2x chance on test, 80x on train
    (_metrics(0.011, 0.40, 0.05), []),  # just above 2x chance
    (_metrics(0.01, 0.049, 0.05), []),  # train top-1 below 10x chance: nothing learned, nothing odd
    (_metrics(0.10, 0.20, 0.93), ["collapsed"]),
    (_metrics(0.10, 0.99, 0.97, chance=0.1), ["collapsed", "chance on test"]),  # 10 classes: halfway rule
    (_metrics(0.70, 0.75, 0.50, chance=0.5), []),  # 2 classes: half the predictions on one is normal
    (_metrics(0.01, 0.01, 0.05), ["chance on both splits"]),  # 2x chance on both: nothing learned
    (_metrics(0.011, 0.01, 0.05), []),
    (_metrics(0.01, 0.011, 0.05), []),
    (_metrics(0.2, 0.2, 0.1, chance=0.1), ["chance on both splits"]),
    (_metrics(0.2, 0.99, 0.1, chance=0.1), ["chance on test"]),
    (_metrics(0.62, 0.625, 0.5, chance=0.5), ["chance on both splits"]),  # 2 classes: a quarter of the way
    (_metrics(0.62, 0.63, 0.5, chance=0.5), []),
    (_metrics(0.02, 0.01, 0.93, chance=0.01), ["collapsed", "chance on both splits"]),
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
    table = report.collect(tmp_path / "metrics", params, _recorded(tmp_path, params))
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
    # the paper's figure as printed, not 1 - x, marked: this run is on the sample, not the real data
    assert "| 25.02 (on real data) | 7.71 (on real data) |" in densenet_line
    # a selection: two rows, registry order, the metrics of the others not read
    params["experiments"] = ["alexnet32", "seed_cnn"]
    (tmp_path / "metrics" / "densenet121" / "seed0.json").unlink()
    assert list(report.collect(tmp_path / "metrics", params, _recorded(tmp_path, params))["experiment"]) == ["seed_cnn", "alexnet32"]
    missing = tmp_path / "metrics" / "seed_cnn" / "seed4.json"
    missing.unlink()
    with pytest.raises(PipelineError, match=r"seed_cnn/seed4.json: missing; rebuild it: `snakemake --cores 1 --forcerun "
                                            r".*seed_cnn/seed4.json`, or `dvc repro`"):
        report.collect(tmp_path / "metrics", params, _recorded(tmp_path, params))


def test_results_csv_matches_the_metrics_files(tmp_path):
    """The CSV the report writes carries the metrics files' numbers (here through the csv module,
    as a user reading results.csv would)."""
    params = config.validate(load_params("config/ci.yaml"))
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
    table = report.collect(tmp_path / "metrics", params, _recorded(tmp_path, params))
    (tmp_path / "results.csv").write_text(table.to_csv(index=False))
    with open(tmp_path / "results.csv") as handle:
        rows = {row["experiment"]: float(row["top1"]) for row in csv.DictReader(handle)}
    assert rows == pytest.approx(expected)


def test_flag_texts_and_boundaries():
    assert report.flags(_metrics(0.10, 0.20, 0.93)) == ["collapsed: 93% of test predictions are one class"]
    assert report.flags(_metrics(0.01, 0.40, 0.05)) == ["chance on test (1.0%) but 40.0% on training images"]
    assert report.flags(_metrics(0.10, 0.20, 0.50)) == ["collapsed: 50% of test predictions are one class"]  # >= half
    assert report.flags(_metrics(0.10, 0.20, 0.499)) == []
    # 3 classes: half the predictions on one class is not odd; twice chance (2/3) is
    assert report.flags(_metrics(0.6, 0.6, 0.6, chance=1 / 3)) == []
    assert report.flags(_metrics(0.6, 0.6, 0.7, chance=1 / 3))[0].startswith("collapsed")
    assert report.flags(_metrics(0.01, 0.05, 0.05)) == ["chance on test (1.0%) but 5.0% on training images"]  # >= 10x
    assert report.flags({"top1": 0.001, "top_class_share": 0.01, "chance_top1": 0.005}) == []  # no train score
    assert report.flags(_metrics(0.2, 0.6, 0.1, chance=0.1)) == ["chance on test (20.0%) but 60.0% on training images"]
    assert report._mean_std([0.3]) == (0.3, 0.0) and report._mean_std([0.2, 0.4])[1] == pytest.approx(0.1414213562)


def _write_metrics(root, name, seed, **values):
    base = {"top1": 0.1, "top5": 0.5, "loss": 2.0, "train_top1": 0.2, "chance_top1": 0.04, "params": 1234567,
            "epochs": 3, "train_images": 90, "train_seconds": 10.0, "train_images_per_second": 27.0,
            "top_class_share": 0.2}
    path = root / name / f"seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**base, **values}))


def test_results_table_cells_exactly(tmp_path):
    """Two experiments' rows of results.md in full: a collapsed seed flagged with its seed, k-fold
    figures, the paper's columns, and the empty cells."""
    params = config.validate(load_params("config/ci.yaml"))
    for name in experiments.EXPERIMENTS:
        for seed in params[name]["seeds"]:
            _write_metrics(tmp_path, name, seed)
    _write_metrics(tmp_path, "seed_cnn", 0, top1=0.25, top5=0.5, loss=1.5, train_top1=0.3, train_seconds=12.0)
    _write_metrics(tmp_path, "seed_cnn", 1, top1=0.15, top5=0.7, loss=2.5, train_top1=0.5, train_seconds=14.0,
                   top_class_share=0.8)
    _write_metrics(tmp_path, "cifar_densenet201_finetune", 0, cv_top1_mean=0.4, cv_top1_std=0.05,
                   train_images_per_second=None)
    _write_metrics(tmp_path, "densenet121", 0, params=1000501)
    _write_metrics(tmp_path, "alexnet32", 0, top1=0.01, train_top1=0.9, top_class_share=0.9)
    table = report.collect(tmp_path, params, _recorded(tmp_path, params))
    rows = table.set_index("experiment")
    assert rows.loc["alexnet32", "flag"] == ("collapsed: 90% of test predictions are one class; "
                                             "chance on test (1.0%) but 90.0% on training images")
    assert rows.loc["seed_cnn", "title"] == paper.of("seed_cnn").title
    assert rows.loc["seed_cnn", "train_images"] == 90 and "train_seconds" not in rows  # results only, no timings
    assert rows.loc["seed_cnn", "top_class_share"] == pytest.approx(0.8)
    assert rows.loc["cifar_densenet201_finetune", "cv_top1_std"] == pytest.approx(0.05)
    assert bool(rows.loc["densenet121", "paper_same_task"]) is False and bool(rows.loc["alexnet32", "paper_same_task"])
    lines = {line.split(" | ")[0][2:]: line for line in report.markdown(table).splitlines()}
    assert lines["experiment"] == ("| experiment | data | seeds | test top-1 % | train top-1 % | top-5 % | loss | chance % "
                                   "| check | params (M) | epochs | k-fold top-1 % | paper top-1 % "
                                   "| paper top-5 % | paper params (M) | paper note |")
    assert report.markdown(table).splitlines()[1] == "|" + "---|" * 16
    assert lines["densenet121"].split(" | ")[9] == "1.001"
    note = paper.of("seed_cnn").note
    assert lines["seed_cnn"] == (
        "| seed_cnn | imagenet200 (sample_tiny_imagenet) | 0 1 | 20.00 ± 7.07 | 40.00 ± 14.14 | 60.00 ± 14.14 | 2.000 ± 0.707 | 4.00 "
        "| ⚠ seed 1: collapsed: 80% of test predictions are one class | 1.235 | 3 |  |  |  | 0.795 "
        f"| {note} |")
    finetune = paper.of("cifar_densenet201_finetune")
    assert lines["cifar_densenet201_finetune"] == (
        "| cifar_densenet201_finetune | cifar10 (sample_cifar10) | 0 | 10.00 | 20.00 | 50.00 | 2.000 | 4.00 | ok | 1.235 | 3 "
        f"| 40.00 ± 5.00 | {report._pct(finetune.top1)} (on real data) | {report._pct(finetune.top5)} | "
        f"{'' if finetune.params_m is None else f'{finetune.params_m:g}'} | {finetune.note} |")
    two = {**_metrics(0.001, 0.9, 0.9), "top5": 0.1, "loss": 1.0}
    assert report.flags(two) == ["collapsed: 90% of test predictions are one class",
                                 "chance on test (0.1%) but 90.0% on training images"]
    assert report._pct(None) == "" and report._pct(float("nan")) == "" and report._pct(0.1234) == "12.34"


def test_paper_figures_stand_beside_runs_on_the_real_data_only(tmp_path):
    """On the embedded sample the paper's figures are marked as the real data's and none is plotted;
    on the official sources they are plain, and those of the same task are plotted."""
    params = config.validate(load_params("config/ci.yaml"))
    for name in experiments.EXPERIMENTS:
        for seed in params[name]["seeds"]:
            _write_metrics(tmp_path, name, seed)
    sample = report.collect(tmp_path, params, _recorded(tmp_path, params))
    assert np.isnan(report.paper_bars(sample)).all()
    line = next(line for line in report.markdown(sample).splitlines() if line.startswith("| alexnet32 |"))
    assert "| 12.00 (on real data) |" in line
    params["data"]["imagenet200"]["source"], params["data"]["cifar10"]["source"] = "tiny_imagenet", "cifar10"
    real = report.collect(tmp_path, params, _recorded(tmp_path, params))
    bars = dict(zip(real["experiment"], report.paper_bars(real)))
    assert bars["alexnet32"] == pytest.approx(12.0) and bars["cifar_base_cnn"] == pytest.approx(82.0)
    assert np.isnan(bars["densenet121"]) and np.isnan(bars["seed_cnn"])  # another task; no figure
    line = next(line for line in report.markdown(real).splitlines() if line.startswith("| alexnet32 |"))
    assert "| 12.00 |" in line and "on real data" not in line


def test_the_summary_names_the_table_the_best_runs_and_the_flagged(tmp_path):
    params = config.validate(load_params("config/ci.yaml"))
    for name in experiments.EXPERIMENTS:
        for seed in params[name]["seeds"]:
            _write_metrics(tmp_path, name, seed)
    _write_metrics(tmp_path, "alexnet32", 0, top1=0.3)
    _write_metrics(tmp_path, "cifar_base_cnn", 0, top1=0.6)
    table = report.collect(tmp_path, params, _recorded(tmp_path, params))
    assert report.summary(table, "out") == [
        "results: out/results.md (figures: out/figures/; HTML: snakemake --report reports/report.html)",
        "best test top-1 per data set: imagenet200 (sample_tiny_imagenet): alexnet32 30.00 %; "
        "cifar10 (sample_cifar10): cifar_base_cnn 60.00 %",
        "flagged: none"]
    _write_metrics(tmp_path, "seed_cnn", 1, top_class_share=0.8)
    (tmp_path / "r").mkdir()
    report.collect(tmp_path, params, _recorded(tmp_path, params)).to_csv(tmp_path / "r" / "results.csv", index=False)
    assert report.summary_of(tmp_path / "r" / "results.csv")[2] == "flagged: seed_cnn (see the check column)"


def test_a_row_names_the_source_its_data_came_from_not_the_params(tmp_path):
    """params switched to another source without a rerun: the row names the source the data were
    prepared from and the one params name, and is flagged; the paper's figures stay marked."""
    params = config.validate(load_params("config/ci.yaml"))
    for name in experiments.EXPERIMENTS:
        for seed in params[name]["seeds"]:
            _write_metrics(tmp_path, name, seed)
    _recorded(tmp_path, params)
    params["data"]["imagenet200"]["source"] = "tiny_imagenet"  # switched, nothing rerun
    rows = report.collect(tmp_path, params, tmp_path / "eval").set_index("experiment")
    assert rows.loc["alexnet32", "source"] == "sample_tiny_imagenet; params name tiny_imagenet"
    assert rows.loc["alexnet32", "flag"] == ("evaluated on data prepared from sample_tiny_imagenet, not from "
                                             "tiny_imagenet as params say (rerun the pipeline)")
    assert not rows.loc["alexnet32", "real_data"] and rows.loc["cifar_base_cnn", "flag"] == ""
    line = next(line for line in report.markdown(rows.reset_index()).splitlines() if line.startswith("| alexnet32 |"))
    assert "| 12.00 (on real data) |" in line and "⚠ evaluated on data prepared from sample_tiny_imagenet" in line


@pytest.mark.parametrize("content, problem", [
    ('{"top1": 0.1, "top5"', r"not valid JSON at line 1, column 21"),
    ("[]", r"not a JSON object"),
    ('{"top5": 0.5}', r"key 'top1' missing"),
    ('{"top1": "high"}', r"key 'top1' is 'high', not a number in \[0.0, 1.0\]"),
    ('{"top1": 1.5}', r"key 'top1' is 1.5, not a number in \[0.0, 1.0\]"),
])
def test_a_corrupt_metrics_file_is_one_line_naming_it_and_the_rebuild(tmp_path, content, problem):
    params = config.validate(load_params("config/ci.yaml"))
    for name in experiments.EXPERIMENTS:
        for seed in params[name]["seeds"]:
            _write_metrics(tmp_path, name, seed)
    broken = tmp_path / "seed_cnn" / "seed1.json"
    broken.write_text(content)
    with pytest.raises(PipelineError) as raised:
        report.collect(tmp_path, params, _recorded(tmp_path, params))
    assert re.fullmatch(rf"{broken}: {problem}; rebuild it: `snakemake --cores 1 --forcerun {broken}`, or `dvc repro` "
                        r"\(which reruns a stage whose output changed\)", str(raised.value)), str(raised.value)


def _figure_table(tmp_path, params):
    """Every ci run's metrics, the i-th experiment with test top-1 10 + 5i % and train top-1 30 %
    more; alexnet32 flagged (collapsed)."""
    for index, name in enumerate(experiments.EXPERIMENTS):
        for seed in params[name]["seeds"]:
            _write_metrics(tmp_path, name, seed, top1=(10 + 5 * index) / 100, train_top1=(40 + 5 * index) / 100,
                           top_class_share=0.9 if name == "alexnet32" else 0.2)
    return report.collect(tmp_path, params, _recorded(tmp_path, params))


def _bars(ax) -> dict[str, list[float]]:
    from matplotlib.container import BarContainer

    return {c.get_label(): [p.get_height() for p in c.patches] for c in ax.containers if isinstance(c, BarContainer)}


def test_the_accuracy_figure_draws_the_table(tmp_path):
    """accuracy.png as drawn: one group per row of the table in its order, test and train top-1 at
    the table's values, the chance marks, a ⚠ over each flagged run's test bar and nowhere else, and
    the paper's bars only beside runs on the real data, of the same task."""
    import matplotlib.pyplot as plt

    params = config.validate(load_params("config/ci.yaml"))
    table = _figure_table(tmp_path, params)
    names = list(experiments.EXPERIMENTS)
    fig = report.accuracy_figure(table)
    ax = fig.axes[0]
    assert [label.get_text() for label in ax.get_xticklabels()] == names
    bars = _bars(ax)
    assert bars["ours: test top-1"] == pytest.approx([10 + 5 * i for i in range(len(names))])
    assert bars["ours: train top-1 (inference mode)"] == pytest.approx([40 + 5 * i for i in range(len(names))])
    assert np.isnan(bars["paper, same task on the real data (test top-1)"]).all()  # the sample: no paper bar
    chance = next(line for line in ax.lines if line.get_label() == "chance")
    assert list(chance.get_ydata()) == pytest.approx(list(100 * table["chance_top1"]))
    marks = [text for text in ax.texts if text.get_text() == "⚠"]
    flagged = names.index("alexnet32")
    assert [mark.xy for mark in marks] == [pytest.approx((flagged - 0.27, 10 + 5 * flagged))]
    assert ax.get_title() == "⚠ = check column of results.md: alexnet32"
    plt.close(fig)

    params["data"]["imagenet200"]["source"], params["data"]["cifar10"]["source"] = "tiny_imagenet", "cifar10"
    _write_metrics(tmp_path, "alexnet32", 0, top1=0.2, train_top1=0.5)  # no longer flagged
    real = report.collect(tmp_path, params, _recorded(tmp_path, params))
    fig = report.accuracy_figure(real)
    paper = dict(zip(names, _bars(fig.axes[0])["paper, same task on the real data (test top-1)"]))
    assert {name: value for name, value in paper.items() if not np.isnan(value)} == pytest.approx({
        "autokeras": 22.36, "alexnet32": 12.0, "cifar_base_cnn": 82.0, "cifar_densenet201_transfer": 9.8,
        "cifar_densenet201_finetune": 80.5})  # the DenseNets' printed figures are ImageNet-1k error rates: none
    assert not [text for text in fig.axes[0].texts if text.get_text() == "⚠"]
    assert fig.axes[0].get_title() == "no run flagged"
    plt.close(fig)


def test_the_learning_curves_draw_every_seeds_live_log(tmp_path):
    """learning_curves.png as drawn: one panel per experiment, titled with it, holding each seed's
    train and validation accuracy at the epochs and values of its DVCLive log; panels past the
    last experiment are blank."""
    import matplotlib.pyplot as plt

    params = config.validate(load_params("config/ci.yaml"))
    table = _figure_table(tmp_path, params)
    live = tmp_path / "live"
    expected = {}
    for index, name in enumerate(experiments.EXPERIMENTS):
        for seed in params[name]["seeds"]:
            for column in ("accuracy", "val_accuracy"):
                points = [(epoch, round(0.01 * (index + seed + epoch), 4)) for epoch in range(1 + index % 3)]
                path = live / name / f"seed{seed}" / "plots" / "metrics" / f"{column}.tsv"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(f"step\t{column}\n" + "".join(f"{e}\t{v}\n" for e, v in points))
                expected[name, f"{column} s{seed}"] = points
    fig = report.learning_curves_figure(table, params, live)
    drawn = {}
    for ax in fig.axes:
        for line in ax.lines:
            drawn[ax.get_title(), line.get_label()] = list(zip(line.get_xdata(), line.get_ydata()))
    assert drawn == expected
    assert [ax.get_title() for ax in fig.axes] == list(experiments.EXPERIMENTS)  # 12: three full rows of 4
    plt.close(fig)
    fig = report.learning_curves_figure(table.iloc[:5], params, live)
    assert [(ax.get_title(), ax.axison) for ax in fig.axes] == [
        (name, True) for name in list(experiments.EXPERIMENTS)[:5]] + [("", False)] * 3
    plt.close(fig)


def test_a_confusion_figure_draws_each_row_as_rates(tmp_path):
    import matplotlib.pyplot as plt

    path = tmp_path / "seed_cnn" / "seed3" / "confusion_matrix.csv"
    path.parent.mkdir(parents=True)
    path.write_text("3,1,0\n0,0,0\n2,2,4\n")  # class 1 has no test image
    fig = report.confusion_figure("seed_cnn", 3, tmp_path)
    rates = fig.axes[0].images[0].get_array()
    assert np.asarray(rates) == pytest.approx(np.array([[0.75, 0.25, 0], [0, 0, 0], [0.25, 0.25, 0.5]]))
    assert fig.axes[0].get_title() == "seed_cnn seed 3: confusion (row-normalised)"
    plt.close(fig)
