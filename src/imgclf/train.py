"""The train stage: one registered experiment -> ``models/<name>/`` (model.keras, history.csv,
train.json), written atomically.

A killed run resumes from its last completed epoch: Keras ``BackupAndRestore`` checkpoints into
``.resume/<name>/``, which is keyed by a fingerprint of the params, the data and the upstream
model, so a changed experiment never resumes from a stale checkpoint."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from imgclf import data as data_module
from imgclf import experiments
from imgclf.errors import PipelineError
from imgclf.io_utils import atomic_dir

RESUME_ROOT = Path(".resume")
HISTORY_FIELDS = ["epoch", "loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5", "seconds"]


# --- runtime -----------------------------------------------------------------------------


def configure_runtime(threads: int, section: dict) -> dict:
    """Threads, seeds, GPU memory growth, mixed precision and XLA, before any TF op runs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    set_threads(threads)
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    mixed = bool(gpus) and section["mixed_precision"]
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    keras.utils.set_random_seed(section["seed"])
    return {"device": "GPU" if gpus else "CPU", "gpus": len(gpus), "mixed_precision": mixed,
            "xla": bool(gpus) and section["xla"], "threads": threads}


def set_threads(threads: int) -> None:
    """TensorFlow's thread pools, sized to what Snakemake gave the job (no oversubscription)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    except RuntimeError:  # TensorFlow already started in this process (tests): keep its pools
        pass


def make_optimizer(section: dict, learning_rate: float, steps: int):
    import keras

    rate = learning_rate
    if section["lr_schedule"] == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, steps))
    decay = section["weight_decay"] or None
    if section["optimizer"] == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, weight_decay=decay)
    if section["optimizer"] == "rmsprop":
        return keras.optimizers.RMSprop(rate, weight_decay=decay)
    return keras.optimizers.AdamW(rate, weight_decay=decay) if decay else keras.optimizers.Adam(rate)


def compile_model(model, section: dict, runtime: dict, learning_rate: float, steps: int) -> None:
    import keras

    model.compile(
        optimizer=make_optimizer(section, learning_rate, steps),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5")],
        jit_compile=runtime["xla"],
        run_eagerly=section.get("run_eagerly", False),
    )


# --- resumable fit -------------------------------------------------------------------------


def _file_digest(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(name: str, section: dict, data_dir: Path, upstream_dir: Path | None) -> str:
    parts = {"experiment": name, "section": section}
    for split in ("train.npz", "val.npz"):
        parts[split] = _file_digest(data_dir / split)
    if upstream_dir is not None:
        parts["upstream"] = _file_digest(upstream_dir / "model.keras")
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def resume_dir(name: str, key: str) -> Path:
    """``.resume/<name>/``, emptied first if it belongs to another fingerprint."""
    path = RESUME_ROOT / name
    marker = path / "fingerprint"
    if path.exists() and (not marker.exists() or marker.read_text() != key):
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    marker.write_text(key)
    return path


def read_history(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_history(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _epoch_logger(path: Path):
    import keras

    class EpochLog(keras.callbacks.Callback):
        """One CSV row per finished epoch, keyed by epoch: a rerun epoch replaces its row."""

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            rows = [r for r in read_history(path) if int(r["epoch"]) != epoch + 1]
            row = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - self.started, 3)}
            row.update({k: round(float(v), 6) for k, v in (logs or {}).items() if k in HISTORY_FIELDS})
            write_history(path, sorted(rows + [row], key=lambda r: int(r["epoch"])))

    return EpochLog()


def _discard_broken_backup(backup: Path) -> None:
    """A run killed while writing its checkpoint leaves an unreadable file: start that run over."""
    import h5py

    for path in backup.glob("*.h5") if backup.exists() else []:
        try:
            with h5py.File(path, "r"):
                pass
        except OSError:
            print(f"warning: {path} is unreadable (killed while saving?): training restarts", flush=True)
            shutil.rmtree(backup)
            return


def fit(model, splits, section: dict, work: Path, epochs: int | None = None, validation=True) -> list[dict]:
    """Fit with per-epoch backup in ``work``; return the history rows of every epoch."""
    import keras

    epochs = epochs or section["epochs"]
    train_ds = data_module.dataset(
        splits.x_train, splits.y_train, section["batch_size"], True, section["seed"],
        section["augment_flip"], section["augment_crop"],
    )
    val_ds = data_module.dataset(splits.x_val, splits.y_val, section["batch_size"], False) if validation else None
    history_path = work / "history.csv"
    _discard_broken_backup(work / "backup")
    # backup first: a history row then always means that epoch's checkpoint is complete
    callbacks = [
        keras.callbacks.BackupAndRestore(str(work / "backup"), delete_checkpoint=False),
        _epoch_logger(history_path),
    ]
    model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks, verbose=2)
    return read_history(history_path)


def steps_for(splits, section: dict, epochs: int | None = None) -> int:
    return -(-len(splits.y_train) // section["batch_size"]) * (epochs or section["epochs"])


# --- trainers, one per experiment kind -----------------------------------------------------


def train_keras(experiment, section, splits, runtime, work, upstream_dir):
    from imgclf import models

    options = {"stem": section["stem"]} if "stem" in section else {}
    model = models.build(experiment.model, splits.image_shape, splits.num_classes, **options)
    compile_model(model, section, runtime, section["learning_rate"], steps_for(splits, section))
    return model, fit(model, splits, section, work), {}, []


def train_autokeras(experiment, section, splits, runtime, work, upstream_dir):
    from imgclf.models import autokeras_search

    return autokeras_search.search(splits, section, work)


def train_transfer(experiment, section, splits, runtime, work, upstream_dir):
    from imgclf.models import transfer

    model = transfer.transfer_model(splits.image_shape, splits.num_classes, section["weights"], upstream_dir)
    compile_model(model, section, runtime, section["learning_rate"], steps_for(splits, section))
    rows = fit(model, splits, section, work)
    return model, rows, {"weights": section["weights"], "trainable_params": transfer.trainable_count(model)}, []


def train_finetune(experiment, section, splits, runtime, work, upstream_dir):
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from imgclf.models import transfer

    rate = section["learning_rate"] * section["lr_factor"]
    # one model, compiled (and so traced) once: every fold and the final fit restart from the
    # transfer model's weights with a fresh optimizer state, instead of paying the graph build again
    model = transfer.finetune_model(Path(upstream_dir) / "model.keras", section["unfreeze_from"])
    compile_model(model, section, runtime, rate, steps_for(splits, section))
    model.optimizer.build(model.trainable_variables)
    start_weights = model.get_weights()
    start_optimizer = [variable.numpy() for variable in model.optimizer.variables]  # step 0, rate, zero slots

    def restart():
        model.set_weights(start_weights)
        for variable, value in zip(model.optimizer.variables, start_optimizer):
            variable.assign(value)

    folds = StratifiedKFold(section["kfold"], shuffle=True, random_state=section["seed"])
    scores = []
    for index, (fit_idx, held_idx) in enumerate(folds.split(splits.x_train, splits.y_train), 1):
        done = work / f"fold{index}.json"
        if not done.exists():  # a finished fold is not trained again after a kill
            fold = data_module.Splits(splits.x_train[fit_idx], splits.y_train[fit_idx], splits.x_train[held_idx],
                                      splits.y_train[held_idx], splits.num_classes, splits.image_shape)
            (work / f"fold{index}").mkdir(exist_ok=True)
            restart()
            rows = fit(model, fold, section, work / f"fold{index}")
            done.write_text(json.dumps({"val_accuracy": float(rows[-1]["val_accuracy"])}))
        scores.append(json.loads(done.read_text())["val_accuracy"])
        print(f"fold {index}/{section['kfold']}: accuracy {scores[-1]:.4f}", flush=True)
    restart()
    (work / "final").mkdir(exist_ok=True)
    rows = fit(model, splits, section, work / "final")
    extra = {
        "cv_top1_mean": float(np.mean(scores)), "cv_top1_std": float(np.std(scores)), "cv_folds": len(scores),
        "cv_top1_folds": scores, "learning_rate_effective": rate, "trainable_params": transfer.trainable_count(model),
    }
    return model, rows, extra, []


TRAINERS = {"keras": train_keras, "autokeras": train_autokeras, "transfer": train_transfer, "finetune": train_finetune}


def run(name: str, data_dir: str | Path, out_dir: str | Path, params: dict, threads: int,
        upstream_dir: str | Path | None = None) -> dict:
    experiment = experiments.get(name)
    section = params[name]
    data_dir = Path(data_dir)
    upstream_dir = Path(upstream_dir) if upstream_dir else None
    if experiment.upstream and upstream_dir is None:
        raise PipelineError(f"experiment {name} needs --upstream (the {experiment.upstream} model directory)")
    runtime = configure_runtime(threads, section)
    splits = data_module.load_training(data_dir, section, name)
    key = fingerprint(name, section, data_dir, upstream_dir)
    work = resume_dir(name, key)
    started = time.perf_counter()
    # a trainer returns the model, per-epoch history rows, extra facts and extra files to keep
    model, rows, extra, files = TRAINERS[experiment.kind](experiment, section, splits, runtime, work, upstream_dir)
    timed = rows and all(r.get("seconds") not in (None, "") for r in rows)
    train_seconds = sum(float(r["seconds"]) for r in rows) if timed else time.perf_counter() - started
    meta = {
        "experiment": name, "model": experiment.model, "kind": experiment.kind, "dataset": experiment.dataset,
        "params": model.count_params(), "train_images": int(len(splits.y_train)), "epochs": len(rows),
        "train_seconds": round(train_seconds, 3),
        "train_images_per_second": round(len(rows) * len(splits.y_train) / train_seconds, 2) if timed else None,
        "wall_seconds_this_run": round(time.perf_counter() - started, 3), "fingerprint": key, **runtime, **extra,
    }
    with atomic_dir(out_dir) as tmp:
        model.save(tmp / "model.keras")
        write_history(tmp / "history.csv", rows)
        (tmp / "train.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        for extra_file in files:
            shutil.copyfile(extra_file, tmp / Path(extra_file).name)
    shutil.rmtree(work, ignore_errors=True)
    return meta
