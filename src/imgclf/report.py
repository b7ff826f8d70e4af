"""The report stage: every selected experiment's metrics, mean and std over its seeds, beside the
paper's figures (markdown + CSV), with a sanity flag per row, and PNG plots: learning curves,
accuracy against the paper (same-task figures only), confusion matrices."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from imgclf import datasets, experiments, paper
from imgclf.errors import PipelineError
from imgclf.io_utils import atomic_dir, write_text
from imgclf.training_log import read_live

COLLAPSE_SHARE = 0.5  # at least half of the test predictions on one class (or all of them, with 2 classes)
NEAR_CHANCE = 2.0  # a top-1 at most this many times chance is near it, or a quarter of the way from chance
# to 100 % where that is lower (4 classes or fewer) ...
LEARNED_TRAIN = 10.0  # ... and one at least this many times chance is learned, or halfway from chance to
# 100 % where that is lower (18 classes or fewer)


def flags(metrics: dict) -> list[str]:
    """What looks wrong with one run's metrics: predictions collapsed onto one class, a model near
    chance on both the test split and its own training images (it learned nothing), or one far
    above chance on its training images but near chance on the test split."""
    chance = metrics["chance_top1"]
    near, learned = min(NEAR_CHANCE * chance, chance + (1 - chance) / 4), min(LEARNED_TRAIN * chance, (1 + chance) / 2)
    train = metrics.get("train_top1")
    found = []
    if metrics["top_class_share"] >= max(COLLAPSE_SHARE, 2 * chance):
        found.append(f"collapsed: {100 * metrics['top_class_share']:.0f}% of test predictions are one class")
    if metrics["top1"] <= near and train is not None:
        if train <= near:
            found.append(f"chance on both splits ({100 * metrics['top1']:.1f}% test, {100 * train:.1f}% train): "
                         "nothing learned")
        elif train >= learned:
            found.append(f"chance on test ({100 * metrics['top1']:.1f}%) but {100 * train:.1f}% on training images")
    return found


def _pct(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{100 * value:.2f}"


def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _pct_std(mean, std, n) -> str:
    return _pct(mean) if n < 2 else f"{100 * mean:.2f} ± {100 * std:.2f}"


# what every metrics file holds (the report reads these): name -> (type, lowest, highest)
FRACTION, COUNT = (float, 0.0, 1.0), (int, 0, None)
METRICS_SCHEMA = {"top1": FRACTION, "top5": FRACTION, "train_top1": FRACTION, "chance_top1": FRACTION,
                  "top_class_share": FRACTION, "loss": (float, 0.0, None), "params": COUNT, "epochs": COUNT,
                  "train_images": COUNT}


def _rebuild(path: Path) -> str:
    return f"rebuild it: `snakemake --cores 1 --forcerun {path}`, or `dvc repro` (which reruns a stage whose output changed)"


def read_record(path: Path, schema: dict) -> dict:
    """A JSON record an earlier stage wrote, checked against ``schema``; anything wrong is one line
    naming the file, the key or the JSON error's position, and how to rebuild it."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: missing; {_rebuild(path)}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise PipelineError(f"{path}: not valid JSON{where}; {_rebuild(path)}") from None
    if not isinstance(record, dict):
        raise PipelineError(f"{path}: not a JSON object; {_rebuild(path)}")
    for key, (kind, low, high) in schema.items():
        value = record.get(key)
        number = kind is float and isinstance(value, (int, float)) or isinstance(value, kind)
        if key not in record or isinstance(value, bool) or not number or (
                kind in (int, float) and not (low <= value and (high is None or value <= high))):
            expected = kind.__name__ if kind is str else f"a number in [{low}, {high if high is not None else 'inf'}]"
            problem = "missing" if key not in record else f"is {value!r}, not {expected}"
            raise PipelineError(f"{path}: key {key!r} {problem}; {_rebuild(path)}")
    return record


def collect(metrics_dir: Path, params: dict, eval_dir: Path) -> pd.DataFrame:
    """One row per experiment that params select (its seeds), registry order. Each row names the
    source its runs were evaluated on, as the prepared data record it (``data.json`` in each run's
    eval directory); where that is not the source params name, the row says both and is flagged."""
    rows = []
    for name in experiments.selected(params):
        experiment, seeds, printed = experiments.EXPERIMENTS[name], params[name]["seeds"], paper.of(name)
        per_seed = [read_record(metrics_dir / name / f"seed{seed}.json", METRICS_SCHEMA) for seed in seeds]
        named = params["data"][experiment.dataset]["source"]
        used = sorted({read_record(eval_dir / name / f"seed{seed}" / "data.json", {"source": (str, None, None)})["source"]
                       for seed in seeds})
        source = used[0] if used == [named] else f"{', '.join(used)}; params name {named}"
        row = {"experiment": name, "dataset": experiment.dataset, "source": source, "title": printed.title,
               "real_data": used == [datasets.DATASETS[experiment.dataset].official],
               "seeds": " ".join(map(str, seeds)), "n_seeds": len(seeds)}
        for key in ("top1", "top5", "loss", "train_top1"):
            row[key], row[f"{key}_std"] = _mean_std([m[key] for m in per_seed])
        first = per_seed[0]
        problems = [f"seed {seed}: {text}" if len(seeds) > 1 else text
                    for seed, m in zip(seeds, per_seed) for text in flags(m)]
        if used != [named]:
            problems.insert(0, f"evaluated on data prepared from {', '.join(used)}, not from {named} as params say "
                               "(rerun the pipeline)")
        rows.append(row | {
            "chance_top1": first["chance_top1"], "top_class_share": max(m["top_class_share"] for m in per_seed),
            "flag": "; ".join(problems), "params": first["params"], "epochs": first["epochs"],
            "train_images": first["train_images"], "cv_top1_mean": first.get("cv_top1_mean"),
            "cv_top1_std": first.get("cv_top1_std"), "paper_top1": printed.top1, "paper_top5": printed.top5,
            "paper_params_m": printed.params_m, "paper_same_task": printed.same_task, "paper_note": printed.note})
    return pd.DataFrame(rows)


def _paper(value, real_data: bool) -> str:
    """A paper figure as printed; beside a run on other data than the real data set it is marked."""
    text = _pct(value)
    return f"{text} (on real data)" if text and not real_data else text


def paper_bars(table: pd.DataFrame) -> list[float]:
    """The paper's top-1 (percent) to plot beside each row: only a figure measured on the same task,
    beside a run on the real data set (NaN elsewhere)."""
    return [100 * row.paper_top1 if row.paper_same_task and row.real_data and row.paper_top1 is not None
            and not pd.isna(row.paper_top1) else np.nan for row in table.itertuples()]


def summary(table: pd.DataFrame, out_dir: str | Path = "reports") -> list[str]:
    """Where to look, and the best run per data set and any flagged run, in three lines."""
    best = table.loc[table.groupby("dataset", sort=False)["top1"].idxmax()]
    flagged = [row.experiment for row in table.itertuples() if row.flag]
    return [f"results: {out_dir}/results.md (figures: {out_dir}/figures/; HTML: snakemake --report reports/report.html)",
            "best test top-1 per data set: " + "; ".join(f"{row.dataset} ({row.source}): {row.experiment} "
                                                           f"{100 * row.top1:.2f} %" for row in best.itertuples()),
            "flagged: " + (", ".join(flagged) + " (see the check column)" if flagged else "none")]


def summary_of(results_csv: str | Path) -> list[str]:
    """``summary`` of a written results.csv (Snakemake's ``onsuccess``)."""
    return summary(pd.read_csv(results_csv, keep_default_na=False), Path(results_csv).parent)


def markdown(table: pd.DataFrame) -> str:
    header = ["experiment", "data", "seeds", "test top-1 %", "train top-1 %", "top-5 %", "loss", "chance %", "check",
              "params (M)", "epochs", "k-fold top-1 %", "paper top-1 %", "paper top-5 %",
              "paper params (M)", "paper note"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.itertuples():
        cv = "" if row.cv_top1_mean is None or pd.isna(row.cv_top1_mean) else f"{100 * row.cv_top1_mean:.2f} ± {100 * row.cv_top1_std:.2f}"
        loss = f"{row.loss:.3f}" if row.n_seeds < 2 else f"{row.loss:.3f} ± {row.loss_std:.3f}"
        cells = [row.experiment, f"{row.dataset} ({row.source})", row.seeds, _pct_std(row.top1, row.top1_std, row.n_seeds),
                 _pct_std(row.train_top1, row.train_top1_std, row.n_seeds),
                 _pct_std(row.top5, row.top5_std, row.n_seeds), loss, _pct(row.chance_top1),
                 f"⚠ {row.flag}" if row.flag else "ok",
                 f"{row.params / 1e6:.3f}", str(row.epochs), cv, _paper(row.paper_top1, row.real_data), _paper(row.paper_top5, row.real_data),
                 "" if pd.isna(row.paper_params_m) else f"{row.paper_params_m:g}", row.paper_note]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


# Figures: what each one draws is tested through its artists (tests/test_report.py); their sizes,
# fonts and colours are outside mutation testing.
# pragma: no mutate block
def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def learning_curves_figure(table: pd.DataFrame, params: dict, live_dir: Path):
    """Per experiment, each seed's train and validation accuracy per epoch from its DVCLive log."""
    plt = _pyplot()
    names = list(table["experiment"])
    columns = min(4, max(1, len(names)))
    grid_rows = -(-len(names) // columns)
    fig, axes = plt.subplots(grid_rows, columns, figsize=(4 * columns, 3.2 * grid_rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for seed in params[name]["seeds"]:
            for column, style in (("accuracy", "-"), ("val_accuracy", "--")):
                if points := read_live(live_dir / name / f"seed{seed}", column):
                    ax.plot(*zip(*points), style, marker="o", label=f"{column} s{seed}")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=6)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    return fig


def accuracy_figure(table: pd.DataFrame):
    """Test and train top-1 per experiment against chance, the paper's same-task figures beside runs
    on the real data (``paper_bars``), and a ⚠ over each flagged run's test bar."""
    plt = _pyplot()
    names = list(table["experiment"])
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names)), 4.5))
    x = np.arange(len(names))
    paper = paper_bars(table)
    ax.bar(x - 0.27, 100 * table["top1"], 0.27, yerr=100 * table["top1_std"], capsize=2, label="ours: test top-1")
    ax.bar(x, 100 * table["train_top1"], 0.27, yerr=100 * table["train_top1_std"], capsize=2, alpha=0.6,
           label="ours: train top-1 (inference mode)")
    ax.bar(x + 0.27, paper, 0.27, label="paper, same task on the real data (test top-1)")
    ax.plot(x, 100 * table["chance_top1"], "k_", markersize=14, label="chance")
    top = float(np.nanmax([100 * table["train_top1"].max(), 100 * table["top1"].max(), np.nanmax(paper + [0])]))
    for index, row in enumerate(table.itertuples()):
        if row.flag:
            ax.annotate("⚠", (index - 0.27, 100 * row.top1), ha="center", va="bottom", color="red", fontsize=14)
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    ax.set(ylabel="top-1 accuracy %", ylim=(0, max(10.0, 1.15 * top)))
    flagged = [row.experiment for row in table.itertuples() if row.flag]
    ax.set_title("⚠ = check column of results.md: " + ", ".join(flagged) if flagged else "no run flagged", fontsize=8,
                 color="red" if flagged else "black")
    ax.legend(fontsize=7)
    return fig


def confusion_figure(name: str, seed: int, eval_dir: Path):
    """One run's confusion matrix, each row divided by its number of test images."""
    plt = _pyplot()
    confusion = np.loadtxt(eval_dir / name / f"seed{seed}" / "confusion_matrix.csv", delimiter=",", ndmin=2)
    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    image = ax.imshow(rates, cmap="viridis", vmin=0, vmax=1)
    ax.set_title(f"{name} seed {seed}: confusion (row-normalised)", fontsize=9)
    ax.set(xlabel="predicted class", ylabel="actual class")
    fig.colorbar(image, ax=ax)
    return fig


def _plots(table: pd.DataFrame, params: dict, live_dir: Path, eval_dir: Path, out: Path) -> None:
    plt = _pyplot()

    def save(fig, file: str) -> None:
        fig.tight_layout()
        fig.savefig(out / file, dpi=80)
        plt.close(fig)

    save(learning_curves_figure(table, params, live_dir), "learning_curves.png")
    save(accuracy_figure(table), "accuracy.png")
    for name in table["experiment"]:
        save(confusion_figure(name, params[name]["seeds"][0], eval_dir), f"confusion_{name}.png")


def run(metrics_dir: str | Path, live_dir: str | Path, eval_dir: str | Path, out_dir: str | Path,
        params: dict) -> pd.DataFrame:
    metrics_dir, live_dir, eval_dir, out_dir = map(Path, (metrics_dir, live_dir, eval_dir, out_dir))
    table = collect(metrics_dir, params, eval_dir)
    with atomic_dir(out_dir / "figures") as tmp:
        _plots(table, params, live_dir, eval_dir, tmp)
    write_text(out_dir / "results.csv", table.to_csv(index=False))
    intro = ("# Results\n\nTest-split figures, mean ± std over seeds where there are several; train top-1 scores, in "
             "inference mode, a stratified subset of the images each model trained on. The check column flags runs "
             "whose test predictions collapse onto one class, that score near chance (at most 2x) on both the test "
             "split and their training images, or that test near chance while scoring far above it on their "
             "training images. Paper figures exactly as the paper prints them, marked "
             "\"(on real data)\" beside a run on other data (the embedded sample, a source of your own); only those "
             "measured on the same task, beside a run on the real data set, are plotted beside ours.\n\n")
    write_text(out_dir / "results.md", intro + markdown(table) + published(table, params))
    return table


def published(table: pd.DataFrame, params: dict) -> str:
    """The figures published on the data of the table's sources (``paper.PUBLISHED``, found by the
    MD5 of the source's test images), labelled as such: measured by others on the whole data set,
    so beside a row that keeps fewer classes (its chance column) they are context, not the same task."""
    parts = []
    for source in dict.fromkeys(table["source"]):
        checksum = params["data"]["sources"].get(source, {}).get("idx_md5", {}).get("test_images")
        if figures := paper.PUBLISHED.get(checksum):
            rows = table[table["source"] == source]
            kept = ", ".join(f"{row.dataset}: {round(1 / row.chance_top1)} classes"
                             for row in rows.drop_duplicates("dataset").itertuples())
            lines = [f"\n## Published figures on {source}\n",
                     f"Published by others on the whole data set (all its classes, its whole test split), not "
                     f"runs of this pipeline; the rows above on {source} keep {kept}.\n",
                     "| model | published test top-1 % | where |", "|---|---|---|"]
            lines += [f"| {figure.model} | {_pct(figure.top1)} | {figure.where} |" for figure in figures]
            parts.append("\n".join(lines) + "\n")
    return "".join(parts)
