"""Per-epoch training logs in the two standard formats: DVCLive's layout (``reports/live/<exp>/seed<N>/``:
``metrics.json`` with the latest epoch, ``plots/metrics/<name>.tsv`` with every epoch), which
``dvc exp show``, ``dvc metrics`` and ``dvc plots`` read while a run trains, and TensorBoard event
files (``logs/tensorboard/<exp>/seed<N>/{train,validation}``, as Keras' own TensorBoard callback
lays them out). The DVCLive files are written here as DVCLive's ``Live.log_metric`` and
``Live.make_summary`` write them, byte for byte, without its repository set-up.

An epoch is logged once its checkpoint is on disk. A (re)started run clears both logs and replays
the epochs its checkpoint already holds before training on, so the logs of a run killed and
resumed hold the same steps and values as an undisturbed run's: no epoch twice, none missing. The
per-epoch wall time is left out of these logs (it is in ``train.json``), so the DVCLive files are
byte-identical too."""

import csv
import json
import math
import os
import shutil
from pathlib import Path

LOGGED = ("loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5")


class LiveFiles:
    """A DVCLive directory: each metric's history (``plots/metrics/<name>.tsv``, a ``step`` column
    and the metric's) and the summary of the latest values with their step (``metrics.json``)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.summary: dict = {}
        self.step: int | None = None

    def log(self, step: int, name: str, value: float) -> None:
        if math.isnan(value) or math.isinf(value):  # as DVCLive: "nan", "inf", not invalid JSON
            value = str(value)
        self.step = step
        path = self.directory / "plots" / "metrics" / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        with open(path, "a", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator=os.linesep)
            if not existed:
                writer.writerow(["step", os.path.basename(name)])
            writer.writerow([step, value])
        *parents, last = name.split("/")
        node = self.summary
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    def write_summary(self) -> None:
        if self.step is not None:
            self.summary["step"] = self.step
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "metrics.json", "w", encoding="utf-8") as handle:
            json.dump(self.summary, handle, indent=4)
            handle.write("\n")


class TrainingLog:
    """One training run's DVCLive directory and TensorBoard directory, either of them optional."""

    def __init__(self, live_dir: str | Path | None, tensorboard_dir: str | Path | None):
        self.live = self.tensorboard_dir = None
        self.writers: dict[str, object] = {}
        if live_dir is not None:
            shutil.rmtree(live_dir, ignore_errors=True)  # also what an earlier, longer run left
            self.live = LiveFiles(live_dir)
        if tensorboard_dir is not None:
            self.tensorboard_dir = Path(tensorboard_dir)
            shutil.rmtree(self.tensorboard_dir, ignore_errors=True)

    def epoch(self, row: dict, prefix: str = "") -> None:
        """Log one finished epoch (``row["epoch"]`` counts from 1, and is the step in both logs);
        ``prefix`` names the fit it belongs to (``fold1/``: a cross-validation fold)."""
        values = {name: float(row[name]) for name in LOGGED if row.get(name) not in (None, "")}
        if self.live is not None:
            for name, value in values.items():
                self.live.log(int(row["epoch"]), f"{prefix}{name}", value)
            self.live.write_summary()
        if self.tensorboard_dir is not None:
            import tensorflow as tf
            for name, value in values.items():
                split, metric = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
                subdir = f"{prefix}{split}"
                if subdir not in self.writers:
                    self.writers[subdir] = tf.summary.create_file_writer(str(self.tensorboard_dir / subdir))
                with self.writers[subdir].as_default():
                    tf.summary.scalar(f"epoch_{metric}", value, step=int(row["epoch"]))
            for writer in self.writers.values():
                writer.flush()

    def replay(self, rows: list[dict], prefix: str = "") -> None:
        """The epochs a resumed fit had finished before it was killed."""
        for row in rows:
            self.epoch(row, prefix)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers = {}


def read_live(live_dir: str | Path, name: str) -> list[tuple[int, float]]:
    """(step, value) of one metric from a DVCLive directory; [] when it was never logged."""
    path = Path(live_dir) / "plots" / "metrics" / f"{name}.tsv"
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return [(int(row["step"]), float(row[name.rsplit("/", 1)[-1]])) for row in csv.DictReader(handle, delimiter="\t")]
