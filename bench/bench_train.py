"""Benchmark: the pipeline's training (`imgclf train`) against a bare `model.fit`, side by side.

For each model, in fresh processes and in one run: the same model, the same embedded-sample
images (prepared as the pipeline prepares them), the same batch size, threads, instruction set and
op determinism (the experiment's `cpu_isa` and `op_determinism`), and the same validation set:

- ``ours``: ``imgclf train <experiment>`` as params.yaml configures it (in graph mode, as the bare
  fit runs; ``bench/bench_eager.py`` decides ``run_eagerly``), with its fused optimizer, tf.data input, keyed shuffling, a checkpoint and the DVCLive/TensorBoard logs after every
  epoch; per-epoch times from its timings log (``logs/timings/``);
- ``bare``: ``model.fit`` on the NumPy arrays (``shuffle=True``, graph mode) with Keras' stock
  Adam built lazily (what a user writes), per-epoch times from a callback. DenseNet-121/169/201
  come from ``keras.applications`` (what a user writes; the pipeline builds the same architecture,
  the same parameters, with its own builder: ``imgclf.models.densenet``), with the pipeline's
  input normalisation and head.

It prints steady-state img/s (the fastest epoch after the first, see ``summary``), the first epoch, the graph
cost (first epoch minus a steady one: tracing and compiling), the whole process, and the ratio of
ours to bare for each; and the machine's fp32 matmul peak (2,048² products, best of 5) measured in
the same run, with each model's training FLOP rate as a fraction of it (3 × forward FLOPs per
image: forward, and twice that backward; convolutions and dense layers counted). Usage:

    python bench/bench_train.py [--models seed_cnn alexnet32 densenet121] [--epochs 5] [--threads 2]

``--full DIR`` compares them at full data size, in one process per model: the Tiny
ImageNet-layout archive of ``bench/bench_paper_scale.py`` (generated in DIR if missing; 200 x 500
+ 10,000 JPEGs) prepared as the pipeline prepares it, every training image loaded, validation on
the whole validation split, and each epoch cut to ``--steps`` mini-batches (``steps_per_epoch``, in
both) so that a run takes minutes. ``ours`` is the pipeline's epoch, ``imgclf.resume.fit`` (keyed
order, tf.data input, validation, checkpoint, DVCLive and TensorBoard logs) on the model
``imgclf.train`` builds and compiles; ``bare`` is ``model.fit`` on the NumPy arrays with validation
data, as above. After one epoch each (tracing), ``--repeats`` epochs of each, alternating. It prints
each epoch's wall and CPU seconds (``time.process_time``: every thread of the process), their
medians, the fastest wall, and the ratios bare ÷ ours (1.00: as fast as a bare fit; 0.95: 5 %
slower):

    python bench/bench_train.py --full bench/out/paper_scale/archives [--repeats 3] [--threads 2]

On a machine whose CPU time is rationed (a VM past its burst allowance), an epoch runs either at
full speed or at a fixed slower pace with the cores idle half the time, whichever code runs; the
CPU seconds and the fastest epoch are the figures that compare the code there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from recipes import keras_compile, pipeline_model, prepared_sample  # noqa: E402  (bench/, the script's directory)
# training images per model: steady epochs long enough to time, short enough for one run
IMAGES = {"densenet121": 1600, "densenet169": 1200, "densenet201": 1000}
# --full: mini-batches per epoch (of 64 images), each epoch's training about 10-25 s on 2 threads
FULL_STEPS = {"seed_cnn": 600, "alexnet32": 150, "densenet121": 60}


def forward_flops(model) -> int:
    """Multiply-adds x 2 of one image's forward pass through the convolutions and dense layers."""
    import keras

    total = 0
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D):
            _, height, width, channels_out = layer.output.shape
            k_h, k_w = layer.kernel_size
            channels_in = layer.input.shape[-1]
            total += 2 * height * width * k_h * k_w * channels_in * channels_out // layer.groups
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return int(total)


def section_for(name: str, args) -> dict:
    from imgclf import config

    params = config.load(ROOT / "params.yaml")
    section = dict(params[name])
    # as params.yaml configures the experiment (instruction set, op determinism), but with the bare
    # fit's plain training: graph mode, no augmentation, schedule, decay or BatchNorm pass
    section.update(run_eagerly=False, epochs=args.epochs, threads=args.threads, bn_recalibration=False,
                   augment_flip=False, augment_crop=0, train_subset=IMAGES.get(name, section["train_subset"]),
                   val_subset=None, lr_schedule="constant", weight_decay=0.0, optimizer="adam",
                   mixed_precision=False, xla=False)
    if args.full:  # every image, each epoch cut to a number of mini-batches
        section.update(train_subset=None, steps_per_epoch=args.steps or FULL_STEPS.get(name, 60))
    return section


def bare_model(experiment, image_shape, num_classes: int):
    """The model as a user would build it: keras.applications for its DenseNets, else the registry's."""
    import keras

    from imgclf import models
    from imgclf.models import layers

    depth = {f"densenet{d}": d for d in (121, 169, 201)}.get(experiment.name)  # (not the small stem)
    if depth is None:
        return models.build(experiment.model, image_shape, num_classes)
    inputs = keras.Input(image_shape)
    base = getattr(keras.applications, f"DenseNet{depth}")(include_top=False, weights=None, input_shape=image_shape,
                                                           pooling="avg")
    return keras.Model(inputs, layers.softmax_head(base(layers.imagenet_normalize(inputs)), num_classes))


def worker_bare(args) -> None:
    """One bare ``model.fit`` in this process; prints its figures as JSON."""
    from imgclf import experiments
    from imgclf.runtime import configure_runtime

    section = section_for(args.model, args)
    configure_runtime(args.threads, section, 0)  # threads, instruction set, op determinism, seeds
    import keras
    import numpy as np

    from imgclf import data

    experiment = experiments.get(args.model)
    splits = data.load_training(args.data, section, 0, args.model)
    model = bare_model(experiment, splits.image_shape, splits.num_classes)
    keras_compile(model, section["learning_rate"])
    seconds = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)

    model.fit(splits.x_train.astype(np.float32), splits.y_train, batch_size=section["batch_size"],
              epochs=args.epochs, validation_data=(splits.x_val.astype(np.float32), splits.y_val), shuffle=True,
              verbose=0, callbacks=[Timer()])
    print(json.dumps({"seconds": seconds, "images": int(len(splits.y_train)), "flops": forward_flops(model)}))


def worker_matmul(args) -> None:
    from imgclf import runtime

    runtime.set_threads(args.threads)
    import tensorflow as tf

    n = 2048
    a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
    matmul = tf.function(lambda x, y: tf.matmul(x, y))
    matmul(a, b).numpy()
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(5):
            result = matmul(a, b)
        result.numpy()
        best = min(best, (time.perf_counter() - started) / 5)
    print(json.dumps({"gflops": 2 * n**3 / best / 1e9}))


def spawn(*extra: str) -> tuple[dict, float]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, __file__, *extra], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(extra)}: failed\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1]), wall


def ours(name: str, data_dir: Path, work: Path, args) -> tuple[dict, float]:
    import yaml

    from imgclf import config

    params = config.load(ROOT / "params.yaml")
    params[name] = section_for(name, args)
    params_file = work / f"{name}.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    out = work / f"{name}-model"
    started = time.perf_counter()
    result = subprocess.run(["imgclf", "train", name, "--data", str(data_dir), "--out", str(out), "--threads",
                             str(args.threads), "--params", str(params_file), "--live", str(work / f"{name}-live"),
                             "--tensorboard", str(work / f"{name}-tb")],
                            capture_output=True, text=True, cwd=work, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"imgclf train {name}: failed\n{result.stderr[-3000:]}")
    from imgclf import paths

    timings = json.loads((work / paths.timings_file(name, params[name]["seeds"][0], "train")).read_text())
    return {"seconds": timings["epoch_seconds"], "images": timings["trained_images"] // args.epochs}, wall


def summary(result: dict) -> dict:
    # steady: the fastest epoch after the first. Not the median: on these shared 2-core machines the
    # same epoch takes either about 6 s or about 10 s (AlexNet, 1,500 images), for the bare fit and
    # for ours alike, and a median of a few epochs lands on either mode by chance.
    seconds = result["seconds"]
    steady = min(seconds[1:]) if len(seconds) > 1 else seconds[0]
    return {"img_s": result["images"] / steady, "first": seconds[0], "graph": seconds[0] - steady}


def worker_full(args) -> None:
    """--full, one model: the pipeline's epoch and a bare fit alternating in this process; prints
    each timed epoch as JSON lines, then the summary line."""
    import statistics

    from imgclf import experiments
    from imgclf.runtime import configure_runtime

    section = {**section_for(args.model, args), "epochs": 1}
    runtime = configure_runtime(args.threads, section, 0)
    import numpy as np

    from imgclf import data
    from imgclf.resume import fit
    from imgclf.training_log import TrainingLog

    experiment = experiments.get(args.model)
    splits = data.load_training(args.data, section, 0, args.model)
    steps = section["steps_per_epoch"]
    ours_model = pipeline_model(args.model, section, runtime, splits)
    bare = keras_compile(bare_model(experiment, splits.image_shape, splits.num_classes), section["learning_rate"])
    x_train, x_val = splits.x_train.astype(np.float32), splits.x_val.astype(np.float32)
    work = Path(args.data).parent / args.model
    log = TrainingLog(work / "live", work / "tensorboard")

    def timed(run) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        return time.perf_counter() - wall, time.process_time() - cpu

    def ours(epoch: int) -> tuple[float, float]:  # a fresh resume directory: the epoch runs, nothing is resumed
        return timed(lambda: fit(ours_model, splits, section, work / f"epoch{epoch}", 0, log, stream=(epoch,)))

    def bare_fit(epoch: int) -> tuple[float, float]:
        return timed(lambda: bare.fit(x_train, splits.y_train, batch_size=section["batch_size"], epochs=1,
                                      steps_per_epoch=steps, validation_data=(x_val, splits.y_val), shuffle=True,
                                      verbose=0))

    ours(0), bare_fit(0)  # tracing
    runs = []
    for epoch in range(1, args.repeats + 1):
        runs.append((*bare_fit(epoch), *ours(epoch)))
        print(json.dumps({"epoch": epoch, "bare_wall": runs[-1][0], "bare_cpu": runs[-1][1],
                          "ours_wall": runs[-1][2], "ours_cpu": runs[-1][3]}), flush=True)
    log.close()
    columns = list(zip(*runs))
    print(json.dumps({"steps": steps, "images": steps * section["batch_size"],
                      "median": [statistics.median(c) for c in columns], "best": [min(c) for c in columns]}))


def full_comparison(data_dir: Path, args) -> None:
    """--full: one process per model (``worker_full``); its epochs, medians and ratios."""
    print(f"{'model':<12} {'epoch':>5} {'steps':>5} {'bare wall s':>11} {'bare CPU s':>10} {'ours wall s':>11} "
          f"{'ours CPU s':>10}", flush=True)
    for name in args.models:
        extra = ["--steps", str(args.steps)] if args.steps else []
        result = subprocess.run([sys.executable, __file__, "--worker", "full", "--model", name, "--data", str(data_dir),
                                 "--full", str(args.full), "--threads", str(args.threads), "--repeats",
                                 str(args.repeats), *extra],
                                capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        if result.returncode != 0:
            raise SystemExit(f"{name}: failed\n{result.stderr[-3000:]}")
        lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        summary = lines[-1]
        for row in lines[:-1]:
            print(f"{name:<12} {row['epoch']:>5} {summary['steps']:>5} {row['bare_wall']:11.2f} {row['bare_cpu']:10.2f} "
                  f"{row['ours_wall']:11.2f} {row['ours_cpu']:10.2f}", flush=True)
        median, best = summary["median"], summary["best"]
        print(f"{name:<12} {'med':>5} {'':>5} {median[0]:11.2f} {median[1]:10.2f} {median[2]:11.2f} {median[3]:10.2f}"
              f"   bare/ours: median wall {median[0] / median[2]:.3f}, best wall {best[0] / best[2]:.3f}, "
              f"median CPU {median[1] / median[3]:.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["seed_cnn", "alexnet32", "densenet121"])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run (without --full)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--full", type=Path, help="full data size: the directory of bench_paper_scale.py's archives")
    parser.add_argument("--steps", type=int, help="--full: mini-batches per epoch (default: per model, FULL_STEPS)")
    parser.add_argument("--repeats", type=int, default=3, help="--full: timed epochs of each side per model")
    parser.add_argument("--worker", choices=["bare", "matmul", "full"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "bare":
        return worker_bare(args)
    if args.worker == "matmul":
        return worker_matmul(args)
    if args.worker == "full":
        return worker_full(args)

    from imgclf import runtime

    print(json.dumps(runtime.cpu_description()))
    if args.full:
        import numpy as np

        from bench_paper_scale import prepare_full

        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp) / "data"
            archive = prepare_full(args.full, data_dir, args.threads)
            sizes = {split: len(np.load(data_dir / f"{split}.npz")["labels"]) for split in ("train", "val")}
            print(f"{archive}: prepared ({sizes['train']:,} training, {sizes['val']:,} validation images); "
                  f"{args.threads} threads", flush=True)
            return full_comparison(data_dir, args)

    common = ["--epochs", str(args.epochs), "--threads", str(args.threads)]
    peak = spawn("--worker", "matmul", *common)[0]["gflops"]
    print(f"fp32 matmul peak ({args.threads} threads): {peak:.0f} GFLOP/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepared_sample(tmp)  # the embedded sample, prepared as the pipeline does
        header = (f"{'model':<12} {'images':>6} {'bare img/s':>10} {'ours img/s':>10} {'ratio':>6} "
                  f"{'1st epoch s (bare/ours)':>23} {'graph s (bare/ours)':>19} {'process s (bare/ours)':>21} "
                  f"{'GFLOP/s':>8} {'of peak':>7}")
        print(header, flush=True)
        for name in args.models:
            bare_result, bare_wall = spawn("--worker", "bare", "--model", name, "--data", str(tmp / "data"), *common)
            our_result, our_wall = ours(name, tmp / "data", tmp, args)
            bare, our = summary(bare_result), summary(our_result)
            gflops = 3 * bare_result["flops"] * our["img_s"] / 1e9
            print(f"{name:<12} {our_result['images']:>6} {bare['img_s']:10.0f} {our['img_s']:10.0f} "
                  f"{our['img_s'] / bare['img_s']:6.2f} {bare['first']:11.1f} / {our['first']:<9.1f} "
                  f"{bare['graph']:9.1f} / {our['graph']:<7.1f} {bare_wall:10.1f} / {our_wall:<8.1f} "
                  f"{gflops:8.1f} {gflops / peak:7.0%}", flush=True)


if __name__ == "__main__":
    main()
