"""Exact resume: a training run killed at any moment and run again ends with the model an
undisturbed run ends with, bit for bit. Every random stream of an epoch is a function of (seed,
fold, epoch) (``imgclf.seeding``), and each epoch's weights and optimizer state are checkpointed
atomically into ``.resume/<name>/seed<seed>/``, which is keyed by a fingerprint of the params, the
data and the upstream model, so a changed experiment never resumes from a stale checkpoint.

A run that recalibrates its BatchNorm statistics at the end (``bn_recalibration``) scores each
epoch's validation pass with statistics recalibrated for that epoch's weights on a fixed
``VALIDATION_CALIBRATION_IMAGES`` training images, and puts the moving statistics back for
training after it: the logged figures are what the model would score if training stopped there,
and the training itself is the same as without the pass."""

import errno
import fcntl
import hashlib
import json
import os
import shutil
import statistics
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

import numpy as np

from imgclf import data as data_module
from imgclf.batchnorm import Recalibration
from imgclf.errors import PipelineError
from imgclf.io_utils import atomic_path, md5sum, write_json
from imgclf.seeding import reseed

RESUME_ROOT = Path(".resume")
VALIDATION_CALIBRATION_IMAGES = 512
HISTORY_FIELDS = ["epoch", "loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5", "seconds"]


def fingerprint(name: str, result: dict, seed: int, data_dir: Path, upstream_dir: Path | None) -> str:
    """What a checkpoint belongs to: the experiment, its result params, the seed, the training and
    validation arrays and the upstream model, hashed."""
    parts = {"experiment": name, "section": result, "seed": seed,
             **{split: md5sum(data_dir / split) for split in ("train.npz", "val.npz")}}
    if upstream_dir is not None:
        parts["upstream"] = md5sum(upstream_dir / "model.keras")
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@contextmanager
def exclusive(name: str, seed: int, out_dir: str | Path) -> Iterator[None]:
    """Hold run (``name``, ``seed``)'s lock, ``.resume/<name>/seed<seed>.lock``, while it trains: a
    second trainer of the same run (another engine, or a rerun beside an orphaned one) stops in one
    line instead of working in the same folders. The lock is the kernel's (flock): it goes with the
    process that holds it, however that process ends."""
    path = RESUME_ROOT / name / f"seed{seed}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(os.open(path, os.O_RDWR | os.O_CREAT, 0o664), "r+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = handle.read().strip() or "unknown"
            raise PipelineError(f"{out_dir}: another process (pid {holder}) is training {name} seed {seed}; "
                                f"wait for it to end or stop it") from None
        except OSError as exc:  # a file system without flock (Lustre mounted noflock, some NFS)
            if exc.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            print(f"note: {path}: no file locks here ({exc.strerror}); a second trainer of this run is not "
                  f"refused", file=sys.stderr, flush=True)
            yield
            return
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def resume_dir(name: str, seed: int, key: str) -> Path:
    """``.resume/<name>/seed<seed>/``, emptied first if it belongs to another fingerprint."""
    path = RESUME_ROOT / name / f"seed{seed}"
    marker = path / "fingerprint"
    if path.exists() and (not marker.exists() or marker.read_text() != key):
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    marker.write_text(key)
    return path


def save_checkpoint(work: Path, epoch: int, model, rows: list[dict]) -> None:
    """Weights and optimizer state after ``epoch`` epochs (``epoch<NNNN>.npz``), then the state file
    that points at them (``state.json``), each written atomically: a kill at any moment leaves the
    last complete checkpoint."""
    path = work / f"epoch{epoch:04d}.npz"
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **{f"w{i}": v.numpy() for i, v in enumerate(model.weights)},
                 **{f"o{i}": v.numpy() for i, v in enumerate(model.optimizer.variables)})
    write_json(work / "state.json", {"epoch": epoch, "checkpoint": path.name, "rows": rows})
    for old in work.glob("epoch*.npz"):
        if old != path:
            old.unlink()


def load_checkpoint(work: Path, model) -> tuple[int, list[dict]]:
    """Restore the last complete checkpoint in ``work``; (0, []) when there is none."""
    state_path = work / "state.json"
    if not state_path.exists():
        return 0, []
    state = json.loads(state_path.read_text())
    with np.load(work / state["checkpoint"]) as saved:
        weights, optimizer = model.weights, model.optimizer.variables
        if len(saved.files) != len(weights) + len(optimizer):
            raise PipelineError(f"{work}: checkpoint does not match the model (delete {work} to start over)")
        for prefix, variables in (("w", weights), ("o", optimizer)):
            for i, variable in enumerate(variables):
                variable.assign(saved[f"{prefix}{i}"])
    print(f"resuming after epoch {state['epoch']} from {work}", flush=True)
    return state["epoch"], state["rows"]


def fit(model, splits, section: dict, work: Path, seed: int, log, stream: tuple = (), prefix: str = "") -> list[dict]:
    """Fit epoch by epoch, each epoch's randomness keyed by (seed, *stream, epoch), with a
    checkpoint after every epoch in ``work``, each epoch logged (``log``, under ``prefix``) once
    its checkpoint is written; return the history rows of every epoch."""
    import keras
    import tensorflow as tf
    epochs = section["epochs"]
    val_ds = data_module.dataset(splits.x_val, splits.y_val, section["batch_size"])
    calibration = Recalibration(model, splits.x_train, section["batch_size"], seed, section["run_eagerly"],
                                limit=VALIDATION_CALIBRATION_IMAGES) if section["bn_recalibration"] else None
    done, rows = load_checkpoint(work, model)
    log.replay(rows, prefix)
    x_train, y_train = tf.convert_to_tensor(splits.x_train), tf.convert_to_tensor(splits.y_train)  # one copy, every epoch
    for epoch in range(done, epochs):
        key = (seed, *stream, epoch)
        reseed(model, *key)
        train_ds = data_module.dataset(x_train, y_train, section["batch_size"], key,
                                       section["augment_flip"], section["augment_crop"])
        started, ends = time.perf_counter(), []  # ends: each training step's end time
        clock = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: ends.append(time.perf_counter()))
        logs = model.fit(train_ds, initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=section.get("steps_per_epoch"),
                         callbacks=[clock], verbose=0).history
        fitted = time.perf_counter()
        with calibration.applied() if calibration else nullcontext():
            scores = model.evaluate(val_ds, verbose=0, return_dict=True)
        logs.update({f"val_{name}": [value] for name, value in scores.items()})
        # the median step after the first (which also traces the graph): what a longer run's projection needs
        steps = [end - start for start, end in zip(ends, ends[1:])]
        row = {"epoch": epoch + 1, **{k: round(float(v[-1]), 6) for k, v in logs.items() if k in HISTORY_FIELDS},
               "seconds": round(time.perf_counter() - started, 3), "fit_seconds": round(fitted - started, 3),
               "step_seconds": round(statistics.median(steps), 5) if steps else None}
        rows.append(row)
        save_checkpoint(work, epoch + 1, model, rows)
        log.epoch(row, prefix)
        print(f"epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k} {v}" for k, v in row.items() if k != "epoch"), flush=True)
    return rows
