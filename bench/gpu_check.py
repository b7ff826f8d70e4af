"""GPU check: is the training path ready for a GPU machine? One script, under 8 minutes on one GPU.

1. Placement: TensorFlow sees a GPU, and a matmul and one training step of a pipeline model run
   on it.
2. Speed: each model (default: seed_cnn, alexnet32, densenet121) trains at batch 256 with mixed
   precision off and on, and XLA off and on; img/s of each, after a warm-up epoch (tracing,
   compiling) that is timed too.
3. Input: the pipeline's tf.data input (keyed shuffling, flips and crops, prefetch) delivers at
   least 3x the images per second that the fastest model configuration consumes.
4. Numbers: a short training run of the seed CNN on the embedded sample gives finite losses, and
   its validation accuracy with mixed precision matches fp32 within noise (two binomial standard
   errors of the difference, at least 2 points).

Prints one line per check with PASS or FAIL, and exits 1 if any failed. ``--allow-cpu`` runs the
same code on a CPU (smaller sizes: a smoke test of the script, not a measurement). Usage:

    python bench/gpu_check.py [--models seed_cnn alexnet32 densenet121] [--batch 256] [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAILED: list[str] = []


def check(name: str, ok: bool, detail: str) -> None:
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
    if not ok:
        FAILED.append(name)


def build(name: str, image_shape, num_classes: int, mixed: bool, xla: bool, learning_rate: float = 1e-3):
    import keras

    from imgclf import experiments, models

    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    experiment = experiments.get(name)
    model = models.build(experiment.model, image_shape, num_classes, family=experiment.model_source.removesuffix(".py"))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=xla)
    return model


def speed(name: str, x, y, num_classes: int, batch: int, steps: int, mixed: bool, xla: bool) -> dict:
    """img/s of ``steps`` training steps after a warm-up epoch of ``steps`` steps."""
    import keras

    from imgclf import data

    keras.backend.clear_session()
    model = build(name, x.shape[1:], num_classes, mixed, xla)
    ds = data.dataset(x, y, batch, (0, 0), flip=True, crop=2).repeat()
    started = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    warm = time.perf_counter() - started
    started = time.perf_counter()
    history = model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0).history
    seconds = time.perf_counter() - started
    return {"img_s": steps * batch / seconds, "warmup_s": warm, "loss": float(history["loss"][-1])}


def input_rate(x, y, batch: int, batches: int) -> float:
    """img/s the pipeline's training input delivers on its own (flips, crops, prefetch)."""
    from imgclf import data

    ds = data.dataset(x, y, batch, (0, 1), flip=True, crop=2).repeat()
    iterator = iter(ds)
    next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch / (time.perf_counter() - started)


def accuracy_run(splits, mixed: bool, epochs: int, batch: int) -> tuple[float, list[float]]:
    """Validation accuracy of the seed CNN after ``epochs`` epochs, and its per-epoch losses."""
    import keras
    import numpy as np

    from imgclf import data

    keras.utils.set_random_seed(0)
    model = build("seed_cnn", splits.image_shape, splits.num_classes, mixed, False)
    history = model.fit(data.dataset(splits.x_train, splits.y_train, batch, (0, 0)), epochs=epochs, verbose=0).history
    predicted = model.predict(splits.x_val.astype(np.float32), batch_size=batch, verbose=0).argmax(axis=1)
    return float(np.mean(predicted == splits.y_val)), [float(v) for v in history["loss"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["seed_cnn", "alexnet32", "densenet121"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per configuration")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the fp32 / mixed-precision accuracy check")
    parser.add_argument("--allow-cpu", action="store_true", help="run on a CPU (a smoke test of this script)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.perf_counter()
    import tensorflow as tf

    from imgclf import config, data, sample

    from imgclf.sources import tiny_imagenet

    gpus = tf.config.list_physical_devices("GPU")
    print(json.dumps({"tensorflow": tf.__version__, "gpus": [g.name for g in gpus],
                      "details": [tf.config.experimental.get_device_details(g) for g in gpus]}), flush=True)
    if not gpus and not args.allow_cpu:
        print("FAIL placement: TensorFlow sees no GPU (tensorflow-cpu is installed, or CUDA is missing: "
              "pip install 'tensorflow[and-cuda]==2.21.0' on the GPU machine)")
        return 1
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    product = tf.matmul(tf.ones((256, 256)), tf.ones((256, 256)))
    check("placement", bool(gpus) and "GPU" in product.device or args.allow_cpu and not gpus,
          f"a matmul ran on {product.device}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sample.make_tiny_imagenet(tmp / "t.zip")
        tiny_imagenet.prepare(tmp / "t.zip", tmp / "data", config.load(ROOT / "params.yaml")["data"], 4)
        section = {"train_subset": None, "val_subset": None}
        splits = data.load_training(tmp / "data", section, 0, "gpu_check")

    x, y = splits.x_train, splits.y_train
    steps = args.steps if gpus else 2
    batch = args.batch if gpus else 32
    rates = {}
    print(f"{'model':<12} {'mixed':>5} {'xla':>5} {'img/s':>9} {'warm-up s':>9}", flush=True)
    for name in args.models:
        for mixed in (False, True):
            for xla in (False, True):
                result = speed(name, x, y, splits.num_classes, batch, steps, mixed, xla)
                rates[(name, mixed, xla)] = result["img_s"]
                print(f"{name:<12} {str(mixed):>5} {str(xla):>5} {result['img_s']:9.0f} {result['warmup_s']:9.1f}",
                      flush=True)
                check(f"finite loss {name} mixed={mixed} xla={xla}", math.isfinite(result["loss"]), f"{result['loss']:.4f}")
    fastest = max(rates.values())
    supplied = input_rate(x, y, batch, 4 * steps)
    check("input outruns the model 3x", supplied >= 3 * fastest,
          f"tf.data {supplied:.0f} img/s against the fastest model configuration's {fastest:.0f} img/s "
          f"({supplied / fastest:.1f}x)")

    epochs = args.epochs if gpus else 1
    fp32, fp32_losses = accuracy_run(splits, False, epochs, 64)
    mixed, mixed_losses = accuracy_run(splits, True, epochs, 64)
    n = len(splits.y_val)
    noise = max(0.02, 2 * math.sqrt(fp32 * (1 - fp32) / n + mixed * (1 - mixed) / n))
    check("finite losses, fp32 and mixed", all(map(math.isfinite, fp32_losses + mixed_losses)),
          f"fp32 {fp32_losses}, mixed {mixed_losses}")
    check("mixed precision accuracy = fp32 within noise", abs(fp32 - mixed) <= noise,
          f"val accuracy fp32 {fp32:.4f}, mixed {mixed:.4f} (noise bound {noise:.4f}, {n} images)")
    print(f"total {time.perf_counter() - started:.0f} s; {len(FAILED)} failed: {FAILED}", flush=True)
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
