"""Benchmark: what "nothing to do" costs on a completed pipeline, per engine.

Median over repeated runs of `dvc status`, `dvc repro` (nothing to do) and `snakemake --dry-run`,
each printed with its ratio to the same tool's bare start-up (`dvc --version`,
`snakemake --version`) measured in the same run: the ratio is what the project adds (reading
params, dvc.yaml, dvc.lock and the Snakefile, checking every stage). Target: `dvc status` and
`snakemake --dry-run` under 3 s on 2 cores; `dvc repro` is shown beside them (it also takes
DVC's read/write lock of every stage's paths, twice per stage). Run it in a project whose
pipeline has completed (e.g. after `make run`):

    python bench/bench_status.py [--repeat 7] [--project .]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

BASELINES = {
    "dvc": ["dvc", "--version"],
    "snakemake": ["snakemake", "--version"],
}
COMMANDS = {
    "dvc status": ("dvc", ["dvc", "status"]),
    "dvc repro (nothing to do)": ("dvc", ["dvc", "repro"]),
    "snakemake --dry-run": ("snakemake", ["snakemake", "--dry-run", "--cores", "2", "--quiet"]),
}
TARGETS = {"dvc status", "snakemake --dry-run"}


def timed(command: list[str], cwd: str) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return elapsed, result.stdout + result.stderr


def median_of(command: list[str], cwd: str, repeat: int) -> tuple[float, str]:
    runs, output = [], ""
    for _ in range(repeat):
        seconds, output = timed(command, cwd)
        runs.append(seconds)
    return statistics.median(runs), output


def slurm_stall_warning() -> None:
    """snakemake-executor-plugin-slurm runs `scontrol show config` whenever snakemake starts; with
    a slurm.conf but no controller answering, that waits MessageTimeout (10 s) first."""
    if not shutil.which("scontrol"):
        return
    started = time.perf_counter()
    subprocess.run(["scontrol", "ping"], capture_output=True, timeout=120)
    if time.perf_counter() - started > 1:
        print("warning: `scontrol ping` took over 1 s (a slurm.conf whose controller is down): every "
              "snakemake start waits as long; start the controller (bash .ci/slurm-cluster.sh start) or "
              "stop the test cluster, which removes its slurm.conf (bash .ci/slurm-cluster.sh stop)", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--project", default=".")
    args = parser.parse_args()
    slurm_stall_warning()
    baselines = {tool: median_of(command, args.project, args.repeat)[0] for tool, command in BASELINES.items()}
    for tool, seconds in baselines.items():
        print(f"{tool + ' --version (baseline)':28s} median {seconds:6.2f} s over {args.repeat} runs")
    ok = True
    for name, (tool, command) in COMMANDS.items():
        median, output = median_of(command, args.project, args.repeat)
        if name.startswith("dvc repro") and "Running stage" in output:
            raise SystemExit("dvc repro ran a stage: complete the pipeline first")
        if name.startswith("snakemake") and "Job stats" in output:
            raise SystemExit("snakemake has jobs to run: complete the pipeline first")
        if name in TARGETS:
            verdict = "ok (< 3 s)" if median < 3 else "OVER 3 s"
            ok &= median < 3
        else:
            verdict = "(no target)"
        print(f"{name:28s} median {median:6.2f} s over {args.repeat} runs  "
              f"{median / baselines[tool]:5.2f}x {tool}'s start-up  {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
