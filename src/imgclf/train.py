"""The train stage: one registered experiment -> ``models/<name>/seed<N>/`` (model.keras, train.json),
written atomically, and its per-epoch logs as it trains (DVCLive files and TensorBoard events,
``imgclf.training_log``). A killed run resumes from its last completed epoch (``imgclf.resume``).

Each experiment kind has a trainer (``TRAINERS``): a ``TrainJob`` in, what it trained out (``Trained``);
``run`` does what every kind shares (runtime, data, resume directory, BatchNorm statistics, the output)."""

import json
import shutil
import time
import zipfile
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from imgclf import data as data_module
from imgclf import models
from imgclf.batchnorm import recalibrate_batchnorm
from imgclf.errors import PipelineError
from imgclf.io_utils import atomic_dir, write_json
from imgclf.resume import HISTORY_FIELDS, exclusive, fingerprint, fit, resume_dir
from imgclf.runtime import configure_runtime, distribution, model_scope, replicas
from imgclf.training_log import TrainingLog

if TYPE_CHECKING:
    from imgclf.experiments import Experiment


@dataclass(frozen=True)
class TrainJob:
    """What a trainer trains. ``runtime`` holds ``configure_runtime``'s facts (``seed``, ``xla``, ...);
    ``strategy`` is the distribution strategy (None: one device); ``work`` the resume directory."""

    experiment: "Experiment"
    section: dict
    splits: data_module.Splits
    runtime: dict
    strategy: object | None
    work: Path
    upstream_dir: Path | None
    log: TrainingLog


@dataclass
class Trained:
    """What a trainer returns: the model, the per-epoch history rows, extra facts for train.json
    and extra files to keep beside the model."""

    model: object
    rows: list[dict]
    extra: dict = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def make_optimizer(section: dict, learning_rate: float, steps: int):
    """Adam, AdamW or SGD with fused per-variable updates (``imgclf.optimizers``), or Keras' RMSprop."""
    import keras
    from imgclf import optimizers
    rate = (keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, steps))
            if section["lr_schedule"] == "cosine" else learning_rate)
    decay = section["weight_decay"] or None
    if section["optimizer"] == "sgd":
        return optimizers.FusedSGD(rate, momentum=0.9, nesterov=True, weight_decay=decay)
    if section["optimizer"] == "rmsprop":
        return keras.optimizers.RMSprop(rate, weight_decay=decay)
    return optimizers.FusedAdamW(rate, weight_decay=decay) if decay else optimizers.FusedAdam(rate)


def compile_model(model, section: dict, runtime: dict, learning_rate: float, steps: int) -> None:
    """Compile, and build the optimizer's slot variables now, eagerly: built lazily inside the
    first traced step, each of a DenseNet's 728 slots becomes a lifted initializer function
    (15 s of tracing)."""
    import keras
    model.compile(optimizer=make_optimizer(section, learning_rate, steps), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5")],
                  jit_compile=runtime["xla"], run_eagerly=section.get("run_eagerly", False))
    model.optimizer.build(model.trainable_variables)


def steps_for(splits, section: dict) -> int:
    """Training steps in all (the cosine schedule's length)."""
    per_epoch = -(-len(splits.y_train) // section["batch_size"])
    return min(per_epoch, section.get("steps_per_epoch") or per_epoch) * section["epochs"]


def train_keras(job: TrainJob) -> Trained:
    section, splits = job.section, job.splits
    options = {"stem": section["stem"]} if "stem" in section else {}
    with model_scope(job.strategy):
        model = models.build(job.experiment.model, splits.image_shape, splits.num_classes, **options)
        compile_model(model, section, job.runtime, section["learning_rate"], steps_for(splits, section))
    return Trained(model, fit(model, splits, section, job.work, job.runtime["seed"], job.log))


def train_autokeras(job: TrainJob) -> Trained:
    from imgclf.models import autokeras_search  # a model module: autokeras' own stage depends on it, no other
    model, rows, extra, files = autokeras_search.search(job.splits, job.section, job.work, job.runtime["seed"])
    job.log.replay(rows)  # the exported model's own fit; the search's trials are in trials.csv
    return Trained(model, rows, extra, files)


def train_transfer(job: TrainJob) -> Trained:
    from imgclf.models import transfer
    section, splits = job.section, job.splits
    with model_scope(job.strategy):
        model = transfer.transfer_model(splits.image_shape, splits.num_classes, section["weights"], job.upstream_dir)
        compile_model(model, section, job.runtime, section["learning_rate"], steps_for(splits, section))
    rows = fit(model, splits, section, job.work, job.runtime["seed"], job.log)
    return Trained(model, rows, {"weights": section["weights"], "trainable_params": transfer.trainable_count(model)})


def train_finetune(job: TrainJob) -> Trained:
    import numpy as np
    from sklearn.model_selection import StratifiedKFold
    from imgclf.models import transfer
    section, splits, work, log, seed = job.section, job.splits, job.work, job.log, job.runtime["seed"]
    rate = section["learning_rate"] * section["lr_factor"]
    # one model, compiled (and so traced) once: every fold and the final fit restart from the
    # transfer model's weights with a fresh optimizer state, instead of paying the graph build again
    with model_scope(job.strategy):
        model = transfer.finetune_model(Path(job.upstream_dir) / "model.keras", section["unfreeze_from"])
        compile_model(model, section, job.runtime, rate, steps_for(splits, section))
    variables = model.weights + model.optimizer.variables
    start = [variable.numpy() for variable in variables]  # the weights; the optimizer at step 0: rate, zero slots

    def restart():
        for variable, value in zip(variables, start):
            variable.assign(value)

    folds = StratifiedKFold(section["kfold"], shuffle=True, random_state=seed)
    scores = []
    for index, (fit_idx, held_idx) in enumerate(folds.split(splits.x_train, splits.y_train), 1):
        done = work / f"fold{index}.json"
        if done.exists():  # a finished fold is not trained again after a kill, only logged again
            log.replay(json.loads(done.read_text())["rows"], f"fold{index}/")
        else:
            fold = data_module.Splits(splits.x_train[fit_idx], splits.y_train[fit_idx], splits.x_train[held_idx],
                                      splits.y_train[held_idx], splits.num_classes, splits.image_shape)
            restart()
            rows = fit(model, fold, section, work / f"fold{index}", seed, log, stream=("fold", index),
                       prefix=f"fold{index}/")
            write_json(done, {"val_accuracy": float(rows[-1]["val_accuracy"]), "rows": rows})
        scores.append(json.loads(done.read_text())["val_accuracy"])
        print(f"fold {index}/{section['kfold']}: accuracy {scores[-1]:.4f}", flush=True)
    restart()
    rows = fit(model, splits, section, work / "final", seed, log, stream=("final",))
    return Trained(model, rows, {
        "cv_top1_mean": float(np.mean(scores)), "cv_top1_std": float(np.std(scores)), "cv_folds": len(scores),
        "cv_top1_folds": scores, "learning_rate_effective": rate, "trainable_params": transfer.trainable_count(model)})


TRAINERS: dict[str, Callable[[TrainJob], Trained]] = {"keras": train_keras, "autokeras": train_autokeras,
                                                       "transfer": train_transfer, "finetune": train_finetune}


def run(experiment: "Experiment", data_dir: str | Path, out_dir: str | Path, section: dict, result: dict,
        threads: int, seed: int, upstream_dir: str | Path | None = None, live_dir: str | Path | None = None,
        tensorboard_dir: str | Path | None = None, timings_path: str | Path | None = None) -> dict:
    """Train ``experiment`` (with its params ``section``, of which ``result`` are those its result
    depends on) with ``seed`` into ``out_dir``; per-epoch logs go to ``live_dir`` (DVCLive) and
    ``tensorboard_dir``, and how long it took to ``timings_path``, where given (the model directory
    holds results only). Returns train.json's record with the timings. One trainer per run at a
    time (``resume.exclusive``)."""
    with exclusive(experiment.name, seed, out_dir):
        return _train(experiment, data_dir, out_dir, section, result, threads, seed, upstream_dir, live_dir,
                      tensorboard_dir, timings_path)


def _train(experiment, data_dir, out_dir, section, result, threads, seed, upstream_dir, live_dir, tensorboard_dir,
           timings_path) -> dict:
    name, data_dir = experiment.name, Path(data_dir)
    upstream_dir = Path(upstream_dir) if upstream_dir else None
    if experiment.upstream and upstream_dir is None:
        raise PipelineError(f"experiment {name} needs --upstream (the {experiment.upstream} model directory)")
    runtime = configure_runtime(threads, section, seed)
    strategy = distribution(section) if experiment.kind != "autokeras" else None
    runtime["replicas"] = replicas(strategy)
    splits = data_module.load_training(data_dir, section, seed, name)
    key = fingerprint(name, result, seed, data_dir, upstream_dir)
    work = resume_dir(name, seed, key)
    started = time.perf_counter()
    with closing(TrainingLog(live_dir, tensorboard_dir)) as log:
        job = TrainJob(experiment, section, splits, runtime, strategy, work, upstream_dir, log)
        trained = TRAINERS[experiment.kind](job)
    model, rows, extra, files = trained.model, trained.rows, trained.extra, trained.files
    timed = rows and all(r.get("seconds") not in (None, "") for r in rows)
    train_seconds = sum(float(r["seconds"]) for r in rows) if timed else time.perf_counter() - started
    recalibrated, recal_started = 0, time.perf_counter()
    if section["bn_recalibration"]:
        recalibrated = recalibrate_batchnorm(model, splits.x_train, section["batch_size"], seed, section["run_eagerly"])
        if recalibrated:
            print(f"BatchNorm statistics of {recalibrated} layers recalibrated on training images in "
                  f"{time.perf_counter() - recal_started:.1f} s", flush=True)
    recal_seconds = time.perf_counter() - recal_started
    steps = section.get("steps_per_epoch")
    trained_images = len(rows) * min(len(splits.y_train), steps * section["batch_size"] if steps else len(splits.y_train))
    meta = {
        "experiment": name, "model": experiment.model, "kind": experiment.kind, "dataset": experiment.dataset,
        "params": model.count_params(), "train_images": int(len(splits.y_train)), "epochs": len(rows),
        "fingerprint": key, "bn_recalibrated_layers": recalibrated, **runtime, **extra,
        "history": [{key: row[key] for key in HISTORY_FIELDS if key in row and key != "seconds"} for row in rows],
    }
    timings = {
        "train_seconds": round(train_seconds, 3),
        "trained_images": trained_images,  # steps_per_epoch may cut an epoch short
        "train_images_per_second": round(trained_images / train_seconds, 2) if timed else None,
        "wall_seconds_this_run": round(time.perf_counter() - started, 3),
        "epoch_seconds": [row.get("seconds") for row in rows],
        "fit_seconds": [row.get("fit_seconds") for row in rows],  # the epoch's training, without validation
        "step_seconds": [row.get("step_seconds") for row in rows],  # the median step after the first
        "recalibration_seconds": round(recal_seconds, 3),
    }
    with atomic_dir(out_dir) as tmp:
        save_model(model, tmp / "model.keras")
        (tmp / "train.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        for extra_file in files:
            shutil.copyfile(extra_file, tmp / Path(extra_file).name)
    shutil.rmtree(work, ignore_errors=True)
    if timings_path is not None:
        write_json(timings_path, timings)
    return {**meta, **timings}


def save_model(model, path: Path) -> None:
    """``model.save``, byte for byte the same for the same weights. Keras stamps the save date into
    metadata.json and the weights' zip entry, and numbers objects shared between layers by their
    memory address in config.json: the date is taken out, zip entries are dated 1980-01-01, and
    shared objects are numbered in order of appearance."""
    numbers: dict[int, int] = {}

    def renumber(node):
        if isinstance(node, dict):
            return {key: numbers.setdefault(value, len(numbers) + 1) if key == "shared_object_id" else renumber(value)
                    for key, value in node.items()}
        return [renumber(item) for item in node] if isinstance(node, list) else node

    raw = path.with_name(f".unstamped.{path.name}")  # Keras asks for the .keras suffix
    model.save(raw)
    with zipfile.ZipFile(raw) as source, zipfile.ZipFile(path, "w") as out:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "metadata.json":
                data = json.dumps({k: v for k, v in json.loads(data).items() if k != "date_saved"}).encode()
            elif info.filename == "config.json":
                data = json.dumps(renumber(json.loads(data))).encode()
            entry = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type, entry.external_attr = info.compress_type, 0o644 << 16
            out.writestr(entry, data)
    raw.unlink()
