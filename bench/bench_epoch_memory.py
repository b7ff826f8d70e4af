"""Benchmark: does a training stage's memory grow with the number of epochs? At full data size.

Prepares the Tiny ImageNet-layout archive of ``bench/bench_paper_scale.py`` (generated in DIR if
missing) as the pipeline does, then, for each model, runs ``imgclf train`` as the ``full``
profile configures it (every training image, validation on the whole validation split), each epoch cut to ``--steps`` mini-batches (``steps_per_epoch``), once for each of ``--epochs`` (1, 2
and 4 epochs by default), each in a fresh process. It prints each run's peak RSS (the kernel's
``ru_maxrss`` of that process alone), the slope of peak RSS over epochs (least squares), and the
growth per epoch between the last two runs. Memory that grows with epochs (an input pipeline, a
graph or a history kept per epoch) grows between every pair of runs; a stage whose memory is set by
its data and model has none between the last two, whatever a first epoch adds.

    python bench/bench_epoch_memory.py --full bench/out/paper_scale/archives [--models ...] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb(cmd: list[str], cwd: Path) -> float:
    """Run ``cmd``; the peak RSS of its process (MB). A failure stops the bench."""
    process = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit status {process.returncode}\n{stderr[-3000:]}")
    return usage.ru_maxrss / 1024  # KiB on Linux


def slope(xs: list[int], ys: list[float]) -> float:
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", type=Path, required=True, help="the directory of bench_paper_scale.py's archives")
    parser.add_argument("--models", nargs="+", default=["seed_cnn", "alexnet32", "densenet121"])
    parser.add_argument("--epochs", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=20, help="mini-batches per epoch")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from imgclf import config, runtime

    sys.path.insert(0, str(ROOT / "bench"))
    from bench_paper_scale import prepare_full

    print(json.dumps(runtime.cpu_description()))
    params = config.apply_profile(ROOT / "params.yaml", "full")[1]
    print(f"{'model':<12} " + " ".join(f"{f'{e} epoch peak MB':>15}" for e in args.epochs) + f" {'slope MB/epoch':>14} {'last two MB/epoch':>17}",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepare_full(args.full, tmp / "data", args.threads)
        for name in args.models:
            peaks = []
            for epochs in args.epochs:
                run_params = {**params, name: {**params[name], "epochs": epochs, "steps_per_epoch": args.steps,
                                               "threads": args.threads}}
                params_file = tmp / f"{name}-{epochs}.yaml"
                params_file.write_text(yaml.safe_dump(run_params, sort_keys=False))
                work = tmp / f"{name}-{epochs}"
                work.mkdir()
                peaks.append(peak_rss_mb(["imgclf", "train", name, "--data", str(tmp / "data"), "--out", str(work / "model"),
                                          "--threads", str(args.threads), "--params", str(params_file),
                                          "--live", str(work / "live"), "--tensorboard", str(work / "tb")], work))
            print(f"{name:<12} " + " ".join(f"{peak:15.0f}" for peak in peaks)
                  + f" {slope(args.epochs, peaks):14.1f} {(peaks[-1] - peaks[-2]) / (args.epochs[-1] - args.epochs[-2]):17.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
