"""Benchmark: what "nothing to do" costs on a completed pipeline, per engine.

Median over repeated runs of `dvc status`, `dvc repro` (nothing to do) and `snakemake --dry-run`,
each printed with its ratio to `git status` measured in the same run. Target: each under 3 s on
2 cores. Run it in a project whose pipeline has completed (e.g. after `make run`):

    python bench/bench_status.py [--repeat 7] [--project .]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "git status (baseline)": ["git", "status", "--porcelain"],
    "dvc status": ["dvc", "status"],
    "dvc repro (nothing to do)": ["dvc", "repro"],
    "snakemake --dry-run": ["snakemake", "--dry-run", "--cores", "2", "--quiet"],
}


def timed(command: list[str], cwd: str) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return elapsed, result.stdout + result.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--project", default=".")
    args = parser.parse_args()
    medians = {}
    for name, command in COMMANDS.items():
        runs = []
        for _ in range(args.repeat):
            seconds, output = timed(command, args.project)
            runs.append(seconds)
        if name.startswith("dvc repro") and "Running stage" in output:
            raise SystemExit("dvc repro ran a stage: complete the pipeline first")
        if name.startswith("snakemake") and "Job stats" in output:
            raise SystemExit("snakemake has jobs to run: complete the pipeline first")
        medians[name] = statistics.median(runs)
    baseline = medians["git status (baseline)"]
    ok = True
    for name, median in medians.items():
        verdict = "" if name.startswith("git") else ("  ok (< 3 s)" if median < 3 else "  OVER 3 s")
        ok &= name.startswith("git") or median < 3
        print(f"{name:28s} median {median:6.2f} s over {args.repeat} runs  {median / baseline:6.1f}x baseline{verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
