"""Benchmark: what machine-independent defaults cost, and how far the numbers move without them.

Each configuration trains in a fresh process (oneDNN reads ONEDNN_MAX_CPU_ISA once, at load) with
the pipeline's own fit (keyed shuffling, per-epoch checkpoints) on a generated 10-class set (6,003 training images; 1,600 for DenseNet-121), and
prints steady-state images/s (epochs after the first), the final validation accuracy and loss,
and a hash of the trained weights:

- ``native``: oneDNN picks the CPU's best instruction set, no op determinism (what TensorFlow does
  by default: the baseline);
- ``default``: this project's default, ``cpu_isa: avx2`` + ``op_determinism: true``;
- one row per other instruction set the CPU has (``--isas``), standing in for other CPUs: an
  AVX2-only EPYC runs what ``avx2`` runs here, an AVX-512 Xeon what ``native`` runs.

``native`` and ``default`` run ``--repeat`` times, alternating: their img/s is the median, and
their hash reads DIFFERS if any two repeats trained different weights. Equal weight hashes mean
bit-identical training. Target: ``default`` at 0.85x of ``native`` or
better. Usage:

    python bench/bench_determinism.py [--models seed_cnn cifar_cnn densenet121] [--epochs 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIGS = {"native": ("native", False), "default": ("avx2", True)}


def worker(args) -> None:
    import numpy as np

    from imgclf import config, data, models, train
    from imgclf.resume import fit
    from imgclf.runtime import configure_runtime
    from imgclf.training_log import TrainingLog

    section = {**config.load(Path(__file__).resolve().parents[1] / "params.yaml")["cifar_base_cnn"],
               "cpu_isa": args.isa, "op_determinism": args.op_determinism, "epochs": args.epochs,
               "batch_size": 64, "augment_flip": False, "augment_crop": 0}
    runtime = configure_runtime(args.threads, section, 0)
    splits = data.load_training(args.data, {**section, "train_subset": args.images, "val_subset": None}, 0, "bench")
    model = models.build(args.model, splits.image_shape, splits.num_classes)
    train.compile_model(model, section, runtime, 1e-3, train.steps_for(splits, section))
    with tempfile.TemporaryDirectory() as work:
        rows = fit(model, splits, section, Path(work), 0, TrainingLog(None, None))
    steady = [float(r["seconds"]) for r in rows[1:]]
    digest = hashlib.md5(b"".join(np.ascontiguousarray(w.numpy()).tobytes() for w in model.weights)).hexdigest()
    print(json.dumps({"img_s": len(splits.y_train) * len(steady) / sum(steady), "first_epoch_s": float(rows[0]["seconds"]),
                      "val_accuracy": float(rows[-1]["val_accuracy"]), "val_loss": float(rows[-1]["val_loss"]),
                      "weights_md5": digest[:12], "onednn_max_cpu_isa": runtime["onednn_max_cpu_isa"]}))


# training images per model: steady epochs of several seconds, so that per-epoch overheads and
# machine noise do not swamp the comparison
IMAGES = {"densenet121": 1600}


def spawn(model, isa, op_det, data_dir, epochs, threads) -> dict:
    command = [sys.executable, __file__, "--worker", "--model", model, "--isa", isa, "--data", str(data_dir),
               "--epochs", str(epochs), "--threads", str(threads)]
    command += ["--images", str(IMAGES[model])] if model in IMAGES else []
    command += ["--op-determinism"] if op_det else []
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{model} {isa}: failed\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["seed_cnn", "cifar_cnn", "densenet121"])
    parser.add_argument("--isas", nargs="*", default=["avx512_core", "sse41"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="runs of native and default, alternating (median img/s)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--isa", help=argparse.SUPPRESS)
    parser.add_argument("--op-determinism", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from imgclf import runtime
    from recipes import prepare_ten_classes

    print(json.dumps(runtime.cpu_description()))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepare_ten_classes(tmp)
        print(f"{'model':<12} {'config':<22} {'img/s':>8} {'ratio':>6} {'1st epoch s':>11} {'val acc':>8} "
              f"{'val loss':>9} {'weights md5':>13}")
        for model in args.models:
            repeated = {name: [] for name in CONFIGS}
            for _ in range(args.repeat):  # alternating, so drifts in machine speed hit both alike
                for name, (isa, op_det) in CONFIGS.items():
                    repeated[name].append(spawn(model, isa, op_det, tmp / "data", args.epochs, args.threads))
            runs = {}
            for name, results in repeated.items():
                hashes = {r["weights_md5"] for r in results}
                runs[name] = {**results[0], "img_s": statistics.median(r["img_s"] for r in results)}
                if len(hashes) > 1:
                    runs[name]["weights_md5"] = "DIFFERS"
            runs["avx2, no op determinism"] = spawn(model, "avx2", False, tmp / "data", args.epochs, args.threads)
            for isa in args.isas:
                runs[f"{isa} + op determinism"] = spawn(model, isa, True, tmp / "data", args.epochs, args.threads)
            base = runs["native"]["img_s"]
            for name, r in runs.items():
                print(f"{model:<12} {name:<22} {r['img_s']:8.0f} {r['img_s'] / base:6.2f} {r['first_epoch_s']:11.1f} "
                      f"{r['val_accuracy']:8.4f} {r['val_loss']:9.4f} {r['weights_md5']:>13}", flush=True)


if __name__ == "__main__":
    main()
