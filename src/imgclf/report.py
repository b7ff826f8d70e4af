"""The report stage: every experiment's metrics beside the paper's figures (markdown + CSV) and
PNG plots: learning curves, accuracy against the paper, confusion matrices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from imgclf import experiments
from imgclf.errors import PipelineError
from imgclf.io_utils import atomic_dir, write_text


def _pct(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{100 * value:.2f}"


def collect(metrics_dir: Path) -> pd.DataFrame:
    rows = []
    for name, experiment in experiments.EXPERIMENTS.items():
        path = metrics_dir / f"{name}.json"
        if not path.exists():
            raise PipelineError(f"{path}: metrics missing (run the evaluate stage)")
        metrics = json.loads(path.read_text())
        paper = experiment.paper
        rows.append({
            "experiment": name, "dataset": experiment.dataset, "title": experiment.title,
            "top1": metrics["top1"], "top5": metrics["top5"], "loss": metrics["loss"],
            "chance_top1": metrics["chance_top1"], "params": metrics["params"],
            "epochs": metrics["epochs"], "train_images": metrics["train_images"],
            "train_seconds": metrics["train_seconds"], "train_images_per_second": metrics.get("train_images_per_second"),
            "cv_top1_mean": metrics.get("cv_top1_mean"), "cv_top1_std": metrics.get("cv_top1_std"),
            "paper_top1": paper.top1, "paper_top5": paper.top5, "paper_params_m": paper.params_m,
            "paper_note": paper.note,
        })
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    header = ["experiment", "data", "top-1 %", "top-5 %", "loss", "chance %", "params (M)", "epochs", "train s",
              "img/s", "k-fold top-1 %", "paper top-1 %", "paper top-5 %", "paper params (M)", "paper note"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.itertuples():
        cv = "" if row.cv_top1_mean is None or pd.isna(row.cv_top1_mean) else f"{100 * row.cv_top1_mean:.2f} ± {100 * row.cv_top1_std:.2f}"
        cells = [row.experiment, row.dataset, _pct(row.top1), _pct(row.top5), f"{row.loss:.3f}", _pct(row.chance_top1),
                 f"{row.params / 1e6:.3f}", str(row.epochs), f"{row.train_seconds:.0f}",
                 "" if pd.isna(row.train_images_per_second) else f"{row.train_images_per_second:.0f}",
                 cv, _pct(row.paper_top1), _pct(row.paper_top5),
                 "" if pd.isna(row.paper_params_m) else f"{row.paper_params_m:g}", row.paper_note]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _plots(table: pd.DataFrame, models_dir: Path, eval_dir: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table["experiment"])
    columns = 4
    fig, axes = plt.subplots(-(-len(names) // columns), columns, figsize=(16, 3.2 * -(-len(names) // columns)), squeeze=False)
    for ax, name in zip(axes.flat, names):
        history = pd.read_csv(models_dir / name / "history.csv")
        for column in ("accuracy", "val_accuracy"):
            if column in history and history[column].notna().any():
                ax.plot(history["epoch"], history[column], marker="o", label=column)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png", dpi=80)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(12, 4))
    x = np.arange(len(names))
    ax.bar(x - 0.2, 100 * table["top1"], 0.4, label="ours (test top-1)")
    ax.bar(x + 0.2, 100 * table["paper_top1"].astype(float).fillna(0), 0.4, label="paper")
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("top-1 accuracy %")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=80)
    plt.close(fig)

    for name in names:
        confusion = np.loadtxt(eval_dir / name / "confusion_matrix.csv", delimiter=",", ndmin=2)
        rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
        fig, ax = plt.subplots(figsize=(5, 4.5))
        image = ax.imshow(rates, cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"{name}: confusion (row-normalised)", fontsize=9)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("actual class")
        fig.colorbar(image, ax=ax)
        fig.tight_layout()
        fig.savefig(out / f"confusion_{name}.png", dpi=80)
        plt.close(fig)


def run(metrics_dir: str | Path, models_dir: str | Path, eval_dir: str | Path, out_dir: str | Path) -> pd.DataFrame:
    metrics_dir, models_dir, eval_dir, out_dir = map(Path, (metrics_dir, models_dir, eval_dir, out_dir))
    table = collect(metrics_dir)
    with atomic_dir(out_dir / "figures") as tmp:
        _plots(table, models_dir, eval_dir, tmp)
    write_text(out_dir / "results.csv", table.to_csv(index=False))
    write_text(out_dir / "results.md", "# Results\n\nTest-split figures; paper figures as the paper states them.\n\n" + markdown(table))
    return table
