"""The train stage: one registered experiment -> ``models/<name>/seed<N>/`` (model.keras,
train.json), written atomically, and its per-epoch logs as it trains (DVCLive files and
TensorBoard events, ``imgclf.training_log``).

A killed run resumes from its last completed epoch and ends with the model an undisturbed run
ends with, bit for bit: every random stream (order, augmentation, dropout, initial weights) is a
function of (seed, fold, epoch), not of how long the process has run, and each epoch's weights and
optimizer state are checkpointed atomically into ``.resume/<name>/seed<seed>/``, which is keyed by
a fingerprint of the params, the data and the upstream model, so a changed experiment never
resumes from a stale checkpoint."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
from pathlib import Path

from imgclf import data as data_module
from imgclf import experiments, faults
from imgclf.runtime import cpu_description, pin_cpu_isa, set_threads, split_cpu
from imgclf.errors import PipelineError
from imgclf.io_utils import atomic_dir, atomic_path, write_json

RESUME_ROOT = Path(".resume")
HISTORY_FIELDS = ["epoch", "loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5", "seconds"]


# --- runtime -----------------------------------------------------------------------------

def configure_runtime(threads: int, section: dict, seed: int) -> dict:
    """Threads, instruction set, op determinism, seeds, GPU memory growth, mixed precision and
    XLA, before any TF op runs; returns what a result depends on, for train.json."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    isa = pin_cpu_isa(section["cpu_isa"])
    import keras
    import tensorflow as tf

    set_threads(threads)
    split_cpu(int(os.environ.get("IMGCLF_LOGICAL_CPUS", "0") or 0))
    if section["op_determinism"]:
        tf.config.experimental.enable_op_determinism()
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    mixed = bool(gpus) and section["mixed_precision"]
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    keras.utils.set_random_seed(seed)
    return {"device": "GPU" if gpus else "CPU", "gpus": len(gpus), "mixed_precision": mixed,
            "xla": bool(gpus) and section["xla"], "threads": threads, "seed": seed,
            # what TensorFlow's pools really are (tests import TF first: then they are TF's defaults)
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "cpu_isa": section["cpu_isa"], "onednn_max_cpu_isa": isa,
            "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
            "op_determinism": bool(section["op_determinism"]),
            "tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version(),
            **cpu_description()}


def distribution(section: dict):
    """``tf.distribute.MirroredStrategy`` over the job's devices when its params ask for more than
    one GPU and more than one device is there (its GPUs; or the logical CPUs of the test hook), else
    None. ``batch_size`` stays the global batch, split evenly across the replicas, and the learning
    rate stays as set: the numbers do not depend on how many GPUs a job got (``gpus`` is a
    scheduling key, not a result one); to train with a larger global batch, raise ``batch_size``
    and ``learning_rate`` together (the linear scaling rule)."""
    import tensorflow as tf

    if section["gpus"] <= 1:
        return None
    devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    if not devices and os.environ.get("IMGCLF_LOGICAL_CPUS"):
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) < 2:
        print(f"note: gpus: {section['gpus']} asked for, {len(devices) or 'no'} GPU(s) here: one device", flush=True)
        return None
    if section["batch_size"] % len(devices):
        raise PipelineError(f"batch_size {section['batch_size']} does not split evenly over {len(devices)} devices")
    return tf.distribute.MirroredStrategy(devices)


def replicas(strategy) -> int:
    return strategy.num_replicas_in_sync if strategy is not None else 1


def model_scope(strategy):
    """Where a model and its optimizer are built: the strategy's scope, or nowhere special."""
    import contextlib

    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def make_optimizer(section: dict, learning_rate: float, steps: int):
    """The experiment's optimizer: Keras' Adam, AdamW and SGD with fused per-variable updates
    (``imgclf.optimizers``), Keras' RMSprop as it is."""
    import keras

    from imgclf import optimizers

    rate = learning_rate
    if section["lr_schedule"] == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, steps))
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

    model.compile(
        optimizer=make_optimizer(section, learning_rate, steps),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5")],
        jit_compile=runtime["xla"],
        run_eagerly=section.get("run_eagerly", False),
    )
    model.optimizer.build(model.trainable_variables)


# --- exact resume ----------------------------------------------------------------------------


def _file_digest(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(name: str, section: dict, seed: int, data_dir: Path, upstream_dir: Path | None) -> str:
    parts = {"experiment": name, "section": experiments.result_params(section), "seed": seed}
    for split in ("train.npz", "val.npz"):
        parts[split] = _file_digest(data_dir / split)
    if upstream_dir is not None:
        parts["upstream"] = _file_digest(upstream_dir / "model.keras")
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


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
    """Weights and optimizer state after ``epoch`` epochs, then the state file that points at
    them, each written atomically: a kill at any moment leaves the last complete checkpoint."""
    import numpy as np

    path = work / f"epoch{epoch:04d}.npz"
    arrays_ = {f"w{i}": v.numpy() for i, v in enumerate(model.weights)}
    arrays_.update({f"o{i}": v.numpy() for i, v in enumerate(model.optimizer.variables)})
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays_)
        faults.reached("checkpoint")
    faults.reached("state")
    write_json(work / "state.json", {"epoch": epoch, "checkpoint": path.name, "rows": rows})
    for old in work.glob("epoch*.npz"):
        if old != path:
            old.unlink()


def load_checkpoint(work: Path, model) -> tuple[int, list[dict]]:
    """Restore the last complete checkpoint in ``work``; (0, []) when there is none."""
    import numpy as np

    state_path = work / "state.json"
    if not state_path.exists():
        return 0, []
    state = json.loads(state_path.read_text())
    with np.load(work / state["checkpoint"]) as saved:
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        weights, optimizer = model.weights, model.optimizer.variables
        if len(saved.files) != len(weights) + len(optimizer):
            raise PipelineError(f"{work}: checkpoint does not match the model (delete {work} to start over)")
        for i, variable in enumerate(weights):
            variable.assign(saved[f"w{i}"])
        for i, variable in enumerate(optimizer):
            variable.assign(saved[f"o{i}"])
    print(f"resuming after epoch {state['epoch']} from {work}", flush=True)
    return state["epoch"], state["rows"]


def reseed(model, *key) -> None:
    """Every random stream a model holds, keyed by ``key`` (run seed, fold, epoch): each layer's
    seed generator (dropout and any other random layer), Keras' global seed generator, Python's
    and NumPy's global generators. Seed generators are not part of a saved model, so without this
    a resumed epoch would drop other units than the undisturbed one. TensorFlow's global seed is
    left alone: it is part of every traced function's cache key, and a new one each epoch would
    trace the train and test steps again (a minute for a DenseNet)."""
    import random

    import numpy as np
    from keras.src.backend.common import global_state

    random.seed(data_module.stream_seed(*key, "python"))
    np.random.seed(data_module.stream_seed(*key, "numpy"))
    generators = [generator for layer in model._flatten_layers(include_self=True)
                  for generator in getattr(layer, "_seed_generators", [])]
    shared = global_state.get_global_attribute("global_seed_generator")
    for index, generator in enumerate(generators + ([shared] if shared is not None else [])):
        generator.state.assign(np.array([data_module.stream_seed(*key, "layer", index), 0], dtype=generator.state.dtype))


def fit(model, splits, section: dict, work: Path, seed: int, log, stream: tuple = (), prefix: str = "",
        epochs: int | None = None, validation=True) -> list[dict]:
    """Fit epoch by epoch, each epoch's randomness keyed by (seed, *stream, epoch), with a
    checkpoint after every epoch in ``work``, each epoch logged (``log``, under ``prefix``) once
    its checkpoint is written; return the history rows of every epoch."""
    epochs = epochs or section["epochs"]
    val_ds = data_module.dataset(splits.x_val, splits.y_val, section["batch_size"]) if validation else None
    done, rows = load_checkpoint(work, model)
    log.replay(rows, prefix)
    for epoch in range(done, epochs):
        key = (seed, *stream, epoch)
        reseed(model, *key)
        train_ds = data_module.dataset(splits.x_train, splits.y_train, section["batch_size"], key,
                                       section["augment_flip"], section["augment_crop"])
        started = time.perf_counter()
        logs = model.fit(train_ds, validation_data=val_ds, initial_epoch=epoch, epochs=epoch + 1, verbose=0,
                         callbacks=faults.keras_callbacks()).history
        row = {"epoch": epoch + 1, **{k: round(float(v[-1]), 6) for k, v in logs.items() if k in HISTORY_FIELDS},
               "seconds": round(time.perf_counter() - started, 3)}
        rows.append(row)
        save_checkpoint(work, epoch + 1, model, rows)
        log.epoch(row, prefix)
        print(f"epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k} {v}" for k, v in row.items() if k != "epoch"), flush=True)
    return rows


def steps_for(splits, section: dict, epochs: int | None = None) -> int:
    return -(-len(splits.y_train) // section["batch_size"]) * (epochs or section["epochs"])


# --- BatchNorm statistics ----------------------------------------------------------------------


def recalibrate_batchnorm(model, images, batch_size: int, seed: int, eager: bool = False) -> int:
    """Set every trainable BatchNorm layer's moving mean and variance to their average over the
    training images, weights untouched (``torch.optim.swa_utils.update_bn``'s cumulative
    average). After short training, momentum-0.99 moving statistics still lag the weights, and
    the model scores near chance in inference mode while it has learned. Dropout is off during
    the pass, as at inference. ``eager`` calls the model batch by batch instead of tracing a graph
    (as ``run_eagerly`` does for training). Returns the number of layers recalibrated."""
    import keras
    import numpy as np
    import tensorflow as tf

    layers = [layer for layer in model._flatten_layers(include_self=False)
              if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    if not layers:
        return 0
    dropouts = [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, keras.layers.Dropout)]
    saved = ([layer.momentum for layer in layers], [layer.rate for layer in dropouts])
    for layer in layers:
        layer.momentum = 0.0  # each batch's statistics land in the moving variables as they are
    for layer in dropouts:
        layer.rate = 0.0
    def forward(x):
        return model(x, training=True)

    step = forward if eager else tf.function(forward, reduce_retracing=True)
    order = np.random.default_rng(data_module.stream_seed(seed, "batchnorm")).permutation(len(images))
    sums = [[np.zeros(layer.moving_mean.shape, np.float64), np.zeros(layer.moving_variance.shape, np.float64)]
            for layer in layers]
    batches = 0
    try:
        for start in range(0, len(images), batch_size):
            chosen = order[start : start + batch_size]
            if len(chosen) < 2:  # one image has no variance
                continue
            step(tf.constant(images[chosen], tf.float32))
            for total, layer in zip(sums, layers):
                total[0] += layer.moving_mean.numpy()
                total[1] += layer.moving_variance.numpy()
            batches += 1
    finally:
        for layer, momentum in zip(layers, saved[0]):
            layer.momentum = momentum
        for layer, rate in zip(dropouts, saved[1]):
            layer.rate = rate
    if batches == 0:
        raise PipelineError("BatchNorm recalibration needs at least 2 training images")
    for (mean, variance), layer in zip(sums, layers):
        layer.moving_mean.assign((mean / batches).astype(np.float32))
        layer.moving_variance.assign((variance / batches).astype(np.float32))
    return len(layers)


# --- trainers, one per experiment kind -----------------------------------------------------


def train_keras(experiment, section, splits, runtime, work, upstream_dir, log):
    from imgclf import models

    options = {"stem": section["stem"]} if "stem" in section else {}
    with model_scope(runtime["strategy"]):
        model = models.build(experiment.model, splits.image_shape, splits.num_classes,
                             family=experiment.model_source.removesuffix(".py"), **options)
        compile_model(model, section, runtime, section["learning_rate"], steps_for(splits, section))
    return model, fit(model, splits, section, work, runtime["seed"], log), {}, []


def train_autokeras(experiment, section, splits, runtime, work, upstream_dir, log):
    from imgclf.models import autokeras_search

    model, rows, extra, files = autokeras_search.search(splits, section, work, runtime["seed"])
    log.replay(rows)  # the exported model's own fit; the search's trials are in trials.csv
    return model, rows, extra, files


def train_transfer(experiment, section, splits, runtime, work, upstream_dir, log):
    from imgclf.models import transfer

    with model_scope(runtime["strategy"]):
        model = transfer.transfer_model(splits.image_shape, splits.num_classes, section["weights"], upstream_dir)
        compile_model(model, section, runtime, section["learning_rate"], steps_for(splits, section))
    rows = fit(model, splits, section, work, runtime["seed"], log)
    return model, rows, {"weights": section["weights"], "trainable_params": transfer.trainable_count(model)}, []


def train_finetune(experiment, section, splits, runtime, work, upstream_dir, log):
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from imgclf.models import transfer

    seed = runtime["seed"]
    rate = section["learning_rate"] * section["lr_factor"]
    # one model, compiled (and so traced) once: every fold and the final fit restart from the
    # transfer model's weights with a fresh optimizer state, instead of paying the graph build again
    with model_scope(runtime["strategy"]):
        model = transfer.finetune_model(Path(upstream_dir) / "model.keras", section["unfreeze_from"])
        compile_model(model, section, runtime, rate, steps_for(splits, section))
    start_weights = model.get_weights()
    start_optimizer = [variable.numpy() for variable in model.optimizer.variables]  # step 0, rate, zero slots

    def restart():
        model.set_weights(start_weights)
        for variable, value in zip(model.optimizer.variables, start_optimizer):
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
            (work / f"fold{index}").mkdir(exist_ok=True)
            restart()
            rows = fit(model, fold, section, work / f"fold{index}", seed, log, stream=("fold", index),
                       prefix=f"fold{index}/")
            write_json(done, {"val_accuracy": float(rows[-1]["val_accuracy"]), "rows": rows})
            faults.reached("fold")
        scores.append(json.loads(done.read_text())["val_accuracy"])
        print(f"fold {index}/{section['kfold']}: accuracy {scores[-1]:.4f}", flush=True)
    restart()
    (work / "final").mkdir(exist_ok=True)
    rows = fit(model, splits, section, work / "final", seed, log, stream=("final",))
    extra = {
        "cv_top1_mean": float(np.mean(scores)), "cv_top1_std": float(np.std(scores)), "cv_folds": len(scores),
        "cv_top1_folds": scores, "learning_rate_effective": rate, "trainable_params": transfer.trainable_count(model),
    }
    return model, rows, extra, []


TRAINERS = {"keras": train_keras, "autokeras": train_autokeras, "transfer": train_transfer, "finetune": train_finetune}


def run(name: str, data_dir: str | Path, out_dir: str | Path, params: dict, threads: int, seed: int,
        upstream_dir: str | Path | None = None, live_dir: str | Path | None = None,
        tensorboard_dir: str | Path | None = None) -> dict:
    """Train ``name`` (seed ``seed``) into ``out_dir``; per-epoch logs go to ``live_dir`` (DVCLive)
    and ``tensorboard_dir`` where given."""
    from imgclf.training_log import TrainingLog

    experiment = experiments.get(name)
    section = params[name]
    data_dir = Path(data_dir)
    upstream_dir = Path(upstream_dir) if upstream_dir else None
    if experiment.upstream and upstream_dir is None:
        raise PipelineError(f"experiment {name} needs --upstream (the {experiment.upstream} model directory)")
    runtime = configure_runtime(threads, section, seed)
    strategy = distribution(section) if experiment.kind != "autokeras" else None
    runtime["replicas"] = replicas(strategy)
    splits = data_module.load_training(data_dir, section, seed, name)
    key = fingerprint(name, section, seed, data_dir, upstream_dir)
    work = resume_dir(name, seed, key)
    started = time.perf_counter()
    log = TrainingLog(live_dir, tensorboard_dir)
    # a trainer returns the model, per-epoch history rows, extra facts and extra files to keep
    try:
        model, rows, extra, files = TRAINERS[experiment.kind](experiment, section, splits,
                                                              {**runtime, "strategy": strategy}, work,
                                                              upstream_dir, log)
    finally:
        log.close()
    timed = rows and all(r.get("seconds") not in (None, "") for r in rows)
    train_seconds = sum(float(r["seconds"]) for r in rows) if timed else time.perf_counter() - started
    recalibrated = 0
    if section["bn_recalibration"]:
        recal_started = time.perf_counter()
        recalibrated = recalibrate_batchnorm(model, splits.x_train, section["batch_size"], seed, section["run_eagerly"])
        if recalibrated:
            print(f"BatchNorm statistics of {recalibrated} layers recalibrated on {len(splits.y_train)} training "
                  f"images in {time.perf_counter() - recal_started:.1f} s", flush=True)
    meta = {
        "experiment": name, "model": experiment.model, "kind": experiment.kind, "dataset": experiment.dataset,
        "params": model.count_params(), "train_images": int(len(splits.y_train)), "epochs": len(rows),
        "train_seconds": round(train_seconds, 3),
        "train_images_per_second": round(len(rows) * len(splits.y_train) / train_seconds, 2) if timed else None,
        "wall_seconds_this_run": round(time.perf_counter() - started, 3), "fingerprint": key,
        "bn_recalibrated_layers": recalibrated, **runtime, **extra,
        "history": [{key: row[key] for key in HISTORY_FIELDS if key in row} for row in rows],
    }
    with atomic_dir(out_dir) as tmp:
        model.save(tmp / "model.keras")
        (tmp / "train.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        for extra_file in files:
            shutil.copyfile(extra_file, tmp / Path(extra_file).name)
    shutil.rmtree(work, ignore_errors=True)
    return meta
