"""Benchmark: what the recalibrated validation pass costs per epoch.

A run with ``bn_recalibration`` recalibrates its BatchNorm statistics on a fixed 512 training
images (``imgclf.resume.VALIDATION_CALIBRATION_IMAGES``) before each epoch's validation pass and
restores them after it (``imgclf.resume.fit``). Each case trains with the pipeline's own epoch
loop in fresh processes, the same model, data, seed and threads: with ``bn_recalibration:
false`` (the baseline: validation on the moving statistics) and with ``true``, ``--repeat``
times each, alternating. It prints:

- the steady epoch time of each (the fastest epoch after the first over the repeats; the first
  also traces the graphs) and their ratio;
- the pass itself (saving the moving statistics, recalibrating, restoring them), timed inside
  the run: the median over the epochs after the first, and its share of the steady epoch with
  it; the first epoch of each, and the first pass (it also traces the forward pass);
- the last epoch's logged validation top-1 of each, and whether every run trained bit-identical
  weights (the pass must not change the training).

Cases, on a generated 10-class set in the Tiny ImageNet layout (6,003 training images, 200
validation images):

- ``cifar_base_cnn``: the BatchNorm CNN, graph mode, every training image;
- ``densenet121``: DenseNet-121, graph mode, 1,600 training images;
- ``densenet121 sample``: DenseNet-121 as params.yaml runs it on the embedded sample: eagerly,
  200 training images (the pass sees all of them: the worst case).

Usage:

    python bench/bench_bn_validation.py [--cases cifar_base_cnn densenet121 "densenet121 sample"] [--epochs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# case: (experiment, params laid over its params.yaml section)
CASES = {
    "cifar_base_cnn": ("cifar_base_cnn", {"train_subset": None, "run_eagerly": False}),
    "densenet121": ("densenet121", {"train_subset": 1600, "run_eagerly": False}),
    "densenet121 sample": ("densenet121", {"train_subset": 200, "run_eagerly": True}),
}


def worker(args) -> None:
    """One training run in this process; prints its figures as JSON."""
    import numpy as np

    from imgclf import batchnorm, config, data
    from imgclf.resume import fit
    from imgclf.runtime import configure_runtime
    from imgclf.training_log import TrainingLog
    from recipes import pipeline_model

    name, overrides = CASES[args.case]
    section = {**config.load(ROOT / "params.yaml")[name], **overrides, "epochs": args.epochs, "val_subset": None,
               "bn_recalibration": args.recalibrate, "augment_flip": False, "augment_crop": 0}
    passes = []  # each validation's block minus the validation inside it: save, recalibrate, restore
    applied = batchnorm.Recalibration.applied

    @contextlib.contextmanager
    def timed(self):
        started = time.perf_counter()
        with applied(self):
            validation = time.perf_counter()
            yield
            validation = time.perf_counter() - validation
        passes.append(time.perf_counter() - started - validation)

    batchnorm.Recalibration.applied = timed
    runtime = configure_runtime(args.threads, section, 0)
    splits = data.load_training(args.data, section, 0, name)
    model = pipeline_model(name, section, runtime, splits)
    with tempfile.TemporaryDirectory() as work:
        rows = fit(model, splits, section, Path(work), 0, TrainingLog(None, None))
    digest = hashlib.md5(b"".join(np.ascontiguousarray(w.numpy()).tobytes() for w in model.weights)).hexdigest()
    print(json.dumps({"seconds": [float(r["seconds"]) for r in rows], "passes": passes,
                      "val_accuracy": float(rows[-1]["val_accuracy"]), "images": int(len(splits.y_train)),
                      "weights_md5": digest}))


def spawn(case: str, recalibrate: bool, data_dir: Path, epochs: int, threads: int) -> dict:
    command = [sys.executable, __file__, "--worker", "--case", case, "--data", str(data_dir), "--epochs", str(epochs),
               "--threads", str(threads)] + (["--recalibrate"] if recalibrate else [])
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{case}: failed\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each, alternating")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--recalibrate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from imgclf import runtime
    from recipes import prepare_ten_classes

    print(json.dumps(runtime.cpu_description()))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepare_ten_classes(tmp)
        print(f"{'case':<19} {'images':>6} {'epoch s (off/on)':>16} {'ratio':>6} {'pass s':>6} {'share':>6} "
              f"{'1st epoch s (off/on)':>20} {'1st pass s':>10} {'val top-1 (off/on)':>18} {'same weights':>12}",
              flush=True)
        for case in args.cases:
            runs = {False: [], True: []}
            for _ in range(args.repeat):  # alternating, so drifts in machine speed hit both alike
                for recalibrate in runs:
                    runs[recalibrate].append(spawn(case, recalibrate, tmp / "data", args.epochs, args.threads))
            off, on = runs[False], runs[True]
            steady = [min(min(run["seconds"][1:] or run["seconds"]) for run in side) for side in (off, on)]
            passes = statistics.median(seconds for run in on for seconds in run["passes"][1:] or run["passes"])
            same = "yes" if len({run["weights_md5"] for run in off + on}) == 1 else "NO"
            print(f"{case:<19} {off[0]['images']:>6} {steady[0]:7.2f}/{steady[1]:<8.2f} {steady[1] / steady[0]:6.3f} "
                  f"{passes:6.2f} {passes / steady[1]:6.1%} "
                  f"{min(r['seconds'][0] for r in off):9.1f}/{min(r['seconds'][0] for r in on):<10.1f} "
                  f"{min(r['passes'][0] for r in on):10.2f} "
                  f"{off[0]['val_accuracy']:8.3f}/{on[0]['val_accuracy']:<9.3f} {same:>12}", flush=True)


if __name__ == "__main__":
    main()
