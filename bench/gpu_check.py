"""GPU check: is the training path ready for a GPU machine? One script, under 8 minutes on one GPU.

1. Placement: the backend sees a GPU, and a matmul and the training steps run on it.
2. Speed: each model (default: seed_cnn, alexnet32, densenet121) trains at batch 256 with mixed
   precision off and on, and XLA (compiled steps: ``jit_compile``) off and on; img/s of each,
   after a warm-up epoch (tracing, compiling) that is timed too.
3. Input: the pipeline's tf.data input (keyed shuffling, flips and crops, prefetch) delivers at
   least 3x the images per second that the fastest model configuration consumes.
4. Numbers: a short training run of the seed CNN on the embedded sample gives finite losses, and
   its validation accuracy with mixed precision matches fp32 within noise (two binomial standard
   errors of the difference, at least 2 points).

The pipeline trains with TensorFlow (``--backend tensorflow``, the default). The models are
plain Keras 3, so ``--backend jax`` or ``--backend torch`` runs checks 1, 2 and 4 on a machine
whose Python has JAX or PyTorch but no TensorFlow, feeding NumPy batches; check 3 needs tf.data
and is reported as SKIP there. On JAX, XLA off means Keras' unjitted step (op by op); on PyTorch,
XLA on means ``torch.compile``.

Prints one line per check with PASS, FAIL or SKIP, and exits 1 if any failed. ``--allow-cpu``
runs the same code on a CPU (smaller sizes: a smoke test of the script, not a measurement).
``--data DIR`` uses an already prepared data directory instead of generating and preparing the
embedded sample. Usage:

    python bench/gpu_check.py [--backend tensorflow|jax|torch] [--models seed_cnn alexnet32 densenet121]
                              [--batch 256] [--steps 40] [--xla off on] [--data DIR] [--allow-cpu]
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


def check(name: str, ok: bool | None, detail: str) -> None:
    print(f"{'SKIP' if ok is None else 'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
    if ok is False:
        FAILED.append(name)


def build(name: str, image_shape, num_classes: int, mixed: bool, xla: bool, learning_rate: float = 1e-3):
    import keras

    from imgclf import experiments, models
    from recipes import keras_compile

    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    experiment = experiments.get(name)
    model = models.build(experiment.model, image_shape, num_classes)
    return keras_compile(model, learning_rate, top5=False, jit_compile=xla)


def numpy_batches(x, y, batch: int, steps: int, seed: int = 0):
    """``steps`` batches of float32 images drawn from (x, y), half of them flipped: the NumPy feed
    of the non-TensorFlow backends (built before the clock starts)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(y), steps * batch)
    images = x[index].astype(np.float32)
    flip = rng.random(len(index)) < 0.5
    images[flip] = images[flip, :, ::-1]
    return images, y[index]


def speed(backend: str, name: str, x, y, num_classes: int, batch: int, steps: int, mixed: bool, xla: bool) -> dict:
    """img/s of ``steps`` training steps after a warm-up epoch of ``steps`` steps."""
    import keras

    keras.backend.clear_session()
    model = build(name, x.shape[1:], num_classes, mixed, xla)
    if backend == "tensorflow":
        from imgclf import data

        ds = data.dataset(x, y, batch, (0, 0), flip=True, crop=2).repeat()

        def epoch():
            return model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0).history
    else:
        images, labels = numpy_batches(x, y, batch, steps)

        def epoch():
            return model.fit(images, labels, batch_size=batch, epochs=1, shuffle=False, verbose=0).history
    started = time.perf_counter()
    epoch()
    warm = time.perf_counter() - started
    started = time.perf_counter()
    history = epoch()
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


def accuracy_run(backend: str, splits, mixed: bool, epochs: int, batch: int) -> tuple[float, list[float]]:
    """Validation accuracy of the seed CNN after ``epochs`` epochs, and its per-epoch losses."""
    import keras
    import numpy as np

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    # compiled under JAX: its unjitted step compiles every op anew (minutes for a few epochs)
    model = build("seed_cnn", splits.image_shape, splits.num_classes, mixed, backend == "jax")
    if backend == "tensorflow":
        from imgclf import data

        history = model.fit(data.dataset(splits.x_train, splits.y_train, batch, (0, 0)), epochs=epochs, verbose=0).history
    else:
        history = model.fit(splits.x_train.astype(np.float32), splits.y_train, batch_size=batch, epochs=epochs,
                            shuffle=True, verbose=0).history
    predicted = model.predict(splits.x_val.astype(np.float32), batch_size=batch, verbose=0).argmax(axis=1)
    return float(np.mean(predicted == splits.y_val)), [float(v) for v in history["loss"]]


def devices(backend: str) -> tuple[dict, bool]:
    """What the backend reports, and whether it sees a GPU."""
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        return {"tensorflow": tf.__version__, "gpus": [g.name for g in gpus],
                "details": [tf.config.experimental.get_device_details(g) for g in gpus]}, bool(gpus)
    if backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        return {"jax": jax.__version__, "gpus": [d.device_kind for d in gpus]}, bool(gpus)
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "gpus": gpus}, bool(gpus)


def placed_on(tensor) -> str:
    """The device a backend tensor lives on, in the backend's words."""
    if hasattr(tensor, "devices"):  # JAX
        return ",".join(f"{d.platform}:{d.id}" for d in tensor.devices())
    return str(tensor.device)


def prepared_sample(data_dir: Path | None):
    from imgclf import data

    section = {"train_subset": None, "val_subset": None}
    if data_dir is not None:
        return data.load_training(data_dir, section, 0, "gpu_check")
    from recipes import prepared_sample

    with tempfile.TemporaryDirectory() as tmp:
        return data.load_training(prepared_sample(Path(tmp), 4), section, 0, "gpu_check")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["tensorflow", "jax", "torch"], default="tensorflow")
    parser.add_argument("--models", nargs="+", default=["seed_cnn", "alexnet32", "densenet121"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per configuration")
    parser.add_argument("--xla", nargs="+", choices=["off", "on"], default=["off", "on"])
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the fp32 / mixed-precision accuracy check")
    parser.add_argument("--data", type=Path, help="a prepared data directory (default: the embedded sample, prepared here)")
    parser.add_argument("--allow-cpu", action="store_true", help="run on a CPU (a smoke test of this script)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["KERAS_BACKEND"] = args.backend
    started = time.perf_counter()
    report, has_gpu = devices(args.backend)
    print(json.dumps(report), flush=True)
    if not has_gpu and not args.allow_cpu:
        print(f"FAIL placement: {args.backend} sees no GPU (for TensorFlow: tensorflow-cpu is installed, or CUDA "
              "is missing: pip install 'tensorflow[and-cuda]==2.21.0' on the GPU machine)")
        return 1
    import keras

    if keras.backend.backend() != args.backend:
        print(f"FAIL backend: Keras runs on {keras.backend.backend()}, not {args.backend} (KERAS_BACKEND set "
              "before this script ran, or ~/.keras/keras.json)")
        return 1
    product = keras.ops.matmul(keras.ops.ones((256, 256)), keras.ops.ones((256, 256)))
    where = placed_on(product)
    check("placement", ("gpu" in where.lower() or "cuda" in where.lower()) if has_gpu else args.allow_cpu,
          f"a matmul ran on {where}")

    splits = prepared_sample(args.data)
    x, y = splits.x_train, splits.y_train
    steps = args.steps if has_gpu else 2
    batch = args.batch if has_gpu else 32
    rates = {}
    print(f"{'model':<12} {'mixed':>5} {'xla':>5} {'img/s':>9} {'warm-up s':>9}", flush=True)
    for name in args.models:
        for mixed in (False, True):
            for xla in (flag == "on" for flag in args.xla):
                result = speed(args.backend, name, x, y, splits.num_classes, batch, steps, mixed, xla)
                rates[(name, mixed, xla)] = result["img_s"]
                print(f"{name:<12} {str(mixed):>5} {str(xla):>5} {result['img_s']:9.0f} {result['warmup_s']:9.1f}",
                      flush=True)
                check(f"finite loss {name} mixed={mixed} xla={xla}", math.isfinite(result["loss"]), f"{result['loss']:.4f}")
    fastest = max(rates.values())
    if args.backend == "tensorflow":
        supplied = input_rate(x, y, batch, 4 * steps)
        check("input outruns the model 3x", supplied >= 3 * fastest,
              f"tf.data {supplied:.0f} img/s against the fastest model configuration's {fastest:.0f} img/s "
              f"({supplied / fastest:.1f}x)")
    else:
        check("input outruns the model 3x", None, f"the pipeline's input is tf.data, which needs TensorFlow "
              f"(fastest model configuration here: {fastest:.0f} img/s)")

    epochs = args.epochs if has_gpu else 1
    fp32, fp32_losses = accuracy_run(args.backend, splits, False, epochs, 64)
    mixed, mixed_losses = accuracy_run(args.backend, splits, True, epochs, 64)
    n = len(splits.y_val)
    noise = max(0.02, 2 * math.sqrt(fp32 * (1 - fp32) / n + mixed * (1 - mixed) / n))
    check("finite losses, fp32 and mixed", all(map(math.isfinite, fp32_losses + mixed_losses)),
          f"fp32 {fp32_losses}, mixed {mixed_losses}")
    check("mixed precision accuracy = fp32 within noise", abs(fp32 - mixed) <= noise,
          f"val accuracy fp32 {fp32:.4f}, mixed {mixed:.4f} (noise bound {noise:.4f}, {n} images)")
    print(f"total {time.perf_counter() - started:.0f} s; {len(FAILED)} failed: {FAILED}", flush=True)
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT / "src"), str(ROOT / "bench")]
    sys.exit(main())
