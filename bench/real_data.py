"""The real-data run: the ``fashion`` profile's whole DAG (every experiment of the paper on
Fashion-MNIST, Debian's ``dataset-fashion-mnist``) in a clone of this commit, timed, and its
results recorded where they can be compared across commits.

Clones HEAD into ``--workdir``, lays ``config/<profile>.yaml`` over its params (``imgclf params
--profile``), writes the run list, runs ``snakemake --cores N`` with the clone's own code on the
import path, then checks that neither engine has anything left to do (``dvc status`` and
``snakemake -n``). Needs a clean work tree: the record names the commit it ran.

    python bench/real_data.py [--profile fashion] [--seeds 0 1 2] [--set KEY=VALUE ...] [--cores 2]
                              [--workdir bench/out/real_data]

``--seeds`` gives every experiment those seeds and ``--set`` one param (dotted key, YAML value),
laid over the profile as one more overlay. The tests' margins of learning come from ``--profile ci
--seeds 0 1 2``.

Writes ``bench/records/<profile>-<date>/``: ``results.md``, ``results.csv`` and ``figures/``
(the report: test top-1 mean ± std over seeds, top-5, epochs, the learning curves), ``metrics/``
and ``live/`` (each run's metrics and DVCLive history), and ``run.json``: the commit, CPU, cores,
the DAG's wall time, each job's wall time and peak memory (Snakemake's benchmark files) and each
training's seconds and img/s, and the engines' state after the run.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from tune import cpu_model  # noqa: E402


def sh(cmd: list[str], cwd: Path, env: dict, log=None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, text=True, stdout=log or subprocess.PIPE,
                            stderr=subprocess.STDOUT if log else subprocess.PIPE)
    if check and result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({result.returncode}); see {log.name if log else result.stderr[-2000:]}")
    return result


def job_benchmarks(project: Path) -> dict:
    """Each job's wall seconds and peak RSS (MB) from Snakemake's ``benchmark:`` files."""
    jobs = {}
    for path in sorted((project / "logs").rglob("*.benchmark.tsv")):
        with path.open() as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        jobs[str(path.relative_to(project / "logs")).removesuffix(".benchmark.tsv")] = {
            "seconds": round(float(row["s"]), 1), "max_rss_mb": None if row["max_rss"] == "NA" else round(float(row["max_rss"]))}
    return jobs


def training_timings(project: Path) -> dict:
    timings = {}
    for path in sorted((project / "logs" / "timings").rglob("*train*.json")):
        record = json.loads(path.read_text())
        timings[str(path.relative_to(project / "logs" / "timings"))] = {
            key: record.get(key) for key in ("train_seconds", "train_images_per_second", "epoch_seconds")}
    return timings


def gpu_used(project: Path) -> str | None:
    """The GPU the runs trained on (nvidia-smi's name), where any evaluation record says GPU."""
    devices = {json.loads(path.read_text()).get("device") for path in (project / "reports" / "eval").glob("*/*/environment.json")}
    if "GPU" not in devices:
        return None
    try:
        found = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "GPU"
    return found.stdout.strip().splitlines()[0] if found.returncode == 0 and found.stdout.strip() else "GPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="fashion")
    parser.add_argument("--seeds", type=int, nargs="+", help="every experiment's seeds")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "out" / "real_data")
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()  # the commands below run inside the clone
    if sh(["git", "status", "--porcelain", "--untracked-files=no"], ROOT, dict(os.environ)).stdout.strip():
        raise SystemExit("the work tree has uncommitted changes: commit them, the record names the commit it ran")
    commit = sh(["git", "rev-parse", "HEAD"], ROOT, dict(os.environ)).stdout.strip()
    project = args.workdir / "project"
    shutil.rmtree(project, ignore_errors=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    sh(["git", "clone", "-q", str(ROOT), str(project)], ROOT, dict(os.environ))
    # the clone's code, not the editable install's (which a later edit of this tree would change mid-run)
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "IMGCLF_SLURM": "off"}
    from imgclf import experiments, overrides as sets

    overrides = list(args.set) + [f"{name}.seeds={args.seeds}" for name in experiments.EXPERIMENTS if args.seeds]
    sh(["imgclf", "params", "--profile", args.profile], project, env)
    if overrides:  # laid over the profile as one more overlay
        import yaml

        overlay = sets.apply_overrides({}, sets.parse_sets(overrides), "--set")
        (args.workdir / "overrides.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False))
        sh(["imgclf", "params", "--profile", str(args.workdir / "overrides.yaml")], project, env)
    sh(["imgclf", "runs"], project, env)
    log_path = args.workdir / "snakemake.log"
    started = time.perf_counter()
    with log_path.open("w") as log:
        sh(["snakemake", "--cores", str(args.cores)], project, env, log)
    wall = time.perf_counter() - started
    dvc_status = sh(["dvc", "status"], project, env).stdout.strip()
    dry_run = sh(["snakemake", "--dry-run", "--cores", str(args.cores)], project, env).stdout.strip().splitlines()
    out = ROOT / "bench" / "records" / f"{args.profile}-{datetime.date.today().isoformat()}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name in ("results.md", "results.csv", "figures"):
        copy = shutil.copytree if (project / "reports" / name).is_dir() else shutil.copy2
        copy(project / "reports" / name, out / name)
    for name in ("metrics", "live"):
        shutil.copytree(project / "reports" / name, out / name)
    record = {"profile": args.profile, "overrides": overrides, "commit": commit, "date": datetime.date.today().isoformat(), "cpu": cpu_model(),
              "gpu": gpu_used(project), "cores": args.cores, "command": f"snakemake --cores {args.cores}", "dag_wall_seconds": round(wall, 1),
              "dag_wall_minutes": round(wall / 60, 1), "dvc_status_after": dvc_status,
              "snakemake_dry_run_after": dry_run[-1] if dry_run else "", "jobs": job_benchmarks(project),
              "training": training_timings(project)}
    (out / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{out}: the {args.profile} DAG in {wall / 60:.1f} min on {args.cores} cores; dvc status: {dvc_status}; "
          f"snakemake -n: {record['snakemake_dry_run_after']}")
    print((out / "results.md").read_text())


if __name__ == "__main__":
    main()
