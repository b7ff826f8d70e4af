"""Per-epoch training logs in the two standard formats: DVCLive files (``reports/live/<exp>/seed<N>/``:
``metrics.json`` with the latest epoch, ``plots/metrics/<name>.tsv`` with every epoch), which
``dvc exp show`` and ``dvc plots`` read while a run trains, and TensorBoard event files
(``logs/tensorboard/<exp>/seed<N>/{train,validation}``, as Keras' own TensorBoard callback lays
them out).

An epoch is logged once its checkpoint is on disk. A (re)started run clears both logs and replays
the epochs its checkpoint already holds before training on, so the logs of a run killed and
resumed hold the same steps and values as an undisturbed run's: no epoch twice, none missing. The
per-epoch wall time is left out of these logs (it is in ``train.json``), so the DVCLive files are
byte-identical too."""

import csv
import os
import shutil
from pathlib import Path

LOGGED = ("loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5")


def _live_class():
    from dvclive import Live

    class FilesLive(Live):
        """DVCLive's logger, minus what it does on its own outside a DVC pipeline: there it would
        ``dvc init`` a plain git repository, and it fails in one without commits. Under ``dvc repro``
        or ``dvc exp run`` (DVC_ROOT set) it does what DVCLive always does."""

        def _init_dvc(self):
            if os.getenv("DVC_ROOT"):
                try:
                    super()._init_dvc()
                except Exception as exc:  # noqa: BLE001 - logging must never stop a training run
                    print(f"warning: dvclive: {exc} (logging to files only)", flush=True)

    return FilesLive


class TrainingLog:
    """One training run's DVCLive directory and TensorBoard directory, either of them optional."""

    def __init__(self, live_dir: str | Path | None, tensorboard_dir: str | Path | None):
        self.live = self.tensorboard_dir = None
        self.writers: dict[str, object] = {}
        if live_dir is not None:
            shutil.rmtree(live_dir, ignore_errors=True)  # also what an earlier, longer run left
            self.live = _live_class()(str(live_dir), dvcyaml=None, save_dvc_exp=False, report=None)
        if tensorboard_dir is not None:
            self.tensorboard_dir = Path(tensorboard_dir)
            shutil.rmtree(self.tensorboard_dir, ignore_errors=True)

    def epoch(self, row: dict, prefix: str = "") -> None:
        """Log one finished epoch (``row["epoch"]`` counts from 1, and is the step in both logs);
        ``prefix`` names the fit it belongs to (``fold1/``: a cross-validation fold)."""
        values = {name: float(row[name]) for name in LOGGED if row.get(name) not in (None, "")}
        if self.live is not None:
            self.live.step = int(row["epoch"])
            for name, value in values.items():
                self.live.log_metric(f"{prefix}{name}", value)
            self.live.make_summary()
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
