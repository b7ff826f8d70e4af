"""Benchmark: graph mode against ``run_eagerly`` for the demo DAG's experiments, end to end.

A traced training step pays its graph build once per process (about 30 s for a DenseNet-121 on
2 CPU cores, with the fused optimizer) and then runs each step faster; an eager step pays Python
dispatch on every op. Which wins depends on how many steps a job runs, so ``run_eagerly`` is set in
params.yaml only where this benchmark measures eager as faster for the sample's sizes.

For each experiment, in fresh processes and in one run: ``imgclf train`` then ``imgclf evaluate``
(the two stages ``run_eagerly`` affects) on the embedded sample, as params.yaml configures them,
once with ``run_eagerly: false`` and once with ``true`` (``--set``); it prints the wall time of
each and which is faster. Usage:

    python bench/bench_eager.py [--experiments densenet121 densenet121_small_stem ...] [--threads 2]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["densenet121", "densenet169", "densenet201", "densenet161", "densenet121_small_stem"]


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)}: failed\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", nargs="+", default=DEFAULT)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from imgclf import config, experiments

    from recipes import prepared_sample

    params = config.load(ROOT / "params.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepared_sample(tmp)
        print(f"{'experiment':<24} {'images x epochs':>15} {'graph s':>8} {'eager s':>8}  faster  (params.yaml)",
              flush=True)
        for name in args.experiments:
            if experiments.get(name).kind != "keras":
                raise SystemExit(f"{name}: only experiments trained from scratch on the prepared data")
            section = params[name]
            seconds = {}
            for eager in (False, True):
                run = tmp / f"{name}-{eager}"
                override = ["--set", f"{name}.run_eagerly={str(eager).lower()}", "--params", str(ROOT / "params.yaml")]
                common = ["--seed", "0", "--data", str(tmp / "data"), "--threads", str(args.threads)]
                seconds[eager] = timed(["imgclf", "train", name, *common, "--out", str(run / "model"), *override], tmp)
                seconds[eager] += timed(["imgclf", "evaluate", name, *common, "--model", str(run / "model"),
                                         "--metrics", str(run / "metrics.json"), "--out", str(run / "eval"),
                                         *override], tmp)
            faster = "eager" if seconds[True] < seconds[False] else "graph"
            sizes = f"{section['train_subset']} x {section['epochs']}"
            print(f"{name:<24} {sizes:>15} {seconds[False]:8.1f} {seconds[True]:8.1f}  {faster:<6}  "
                  f"(run_eagerly: {str(section['run_eagerly']).lower()})", flush=True)


if __name__ == "__main__":
    main()
