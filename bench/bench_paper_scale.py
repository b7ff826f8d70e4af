"""Benchmark: the paper-scale rehearsal. Every stage of the ``full`` profile's DAG at full data size.

Generates archives in the official layouts at the real data sets' sizes (Tiny ImageNet: 200 classes
x 500 train + 10,000 val + 10,000 test JPEGs at 64x64; CIFAR-10: the 50,000 + 10,000 binary
batches), clones this commit, lays the ``full`` profile over its params, points the two built-in
real sources at the generated archives, and runs the whole DAG with Snakemake. Training is cut
by ``steps_per_epoch`` to a few mini-batches of one epoch, a param that leaves the data's size as it
is: every experiment loads its full splits, augments, trains, recalibrates BatchNorm, validates on
the full validation split, is evaluated on the full test split and is reported, at full size.

Recorded per stage (Snakemake's ``benchmark:`` files and each run's timings log): wall time, peak
RSS, training img/s, output size on disk; then the DVC cache's size, the time ``imgclf record``
(``dvc commit``, hashing every output) took at the end of the run, and the no-op ``dvc status`` and
``snakemake -n`` on the full workspace. ``tools/resources.py`` derives the ``full`` profile's
cluster requests and the projected cost of the full reproduction from the record.

    python bench/bench_paper_scale.py [--workdir bench/out/paper_scale] [--steps 3] [--cores 2]

Writes ``bench/records/paper_scale-<date>.json`` (the figures) and ``.log`` (the table).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from imgclf import sample

ROOT = Path(__file__).resolve().parent.parent


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tiny_archive(work: Path) -> Path:
    """The full-size Tiny ImageNet-layout archive in ``work`` (generated once)."""
    work.mkdir(parents=True, exist_ok=True)
    tiny = work / "tiny-imagenet-200.zip"
    if not tiny.exists():
        started = time.perf_counter()
        # noise 7: a generated JPEG then averages about what the real archive's do (bench_prepare.py)
        sample.make_tiny_imagenet(tiny, classes=200, train_per_class=500, val_per_class=50, test_images=10000, noise=7)
        print(f"generated {tiny} in {time.perf_counter() - started:.0f} s", flush=True)
    return tiny


def prepare_full(work: Path, out: Path, threads: int) -> Path:
    """``tiny_archive(work)`` prepared into ``out`` as the pipeline prepares imagenet200 (200 classes);
    the archive's path."""
    from imgclf import config, datasets
    from imgclf.sources import tiny_imagenet

    archive = tiny_archive(work)
    data = config.load(ROOT / "params.yaml")["data"]
    tiny_imagenet.prepare(archive, out, {**datasets.settings("imagenet200", data), "n_classes": 200}, threads)
    return archive


def archives(work: Path) -> dict[str, dict]:
    """The full-size archives (generated once per work directory), as data.sources entries."""
    tiny, cifar = tiny_archive(work), work / "cifar-10-binary.tar.gz"
    if not cifar.exists():
        started = time.perf_counter()
        sample.make_cifar10(cifar, train_per_batch=10000, test_images=10000)
        print(f"generated {cifar} in {time.perf_counter() - started:.0f} s", flush=True)
    return {
        "tiny_imagenet": {"path": str(tiny), "md5": md5_of(tiny), "size": tiny.stat().st_size, "layout": "tiny_imagenet_zip"},
        "cifar10": {"path": str(cifar), "md5": md5_of(cifar), "size": cifar.stat().st_size, "layout": "cifar10_binary"},
    }


def run(cmd: list[str], cwd: Path, log: Path | None = None, env: dict | None = None) -> float:
    """Run ``cmd``; its seconds. Output to ``log`` (appended) or captured; a failure stops the bench."""
    started = time.perf_counter()
    with open(log, "a") if log else open(os.devnull, "w") as out:
        result = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit status {result.returncode} (see {log or 'its output'})")
    return time.perf_counter() - started


def shown(project: Path) -> dict:
    """Every param of the project's params.yaml with its value (``imgclf params --show``)."""
    return yaml.safe_load(subprocess.run(["imgclf", "params", "--show"], cwd=project, capture_output=True, text=True,
                                         check=True).stdout)


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def benchmark_rows(project: Path) -> dict[str, dict]:
    """Snakemake's benchmark files: ``logs/<rule>/<name>.benchmark.tsv`` -> {"<rule> <name>": row}."""
    rows = {}
    for path in sorted((project / "logs").rglob("*.benchmark.tsv")):
        with open(path) as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        name = str(path.relative_to(project / "logs")).removesuffix(".benchmark.tsv")
        rule, _, rest = name.partition("/")
        rows[f"{rule} {rest}"] = {"seconds": float(row["s"]), "max_rss_mb": float(row["max_rss"] or 0),
                                  "cpu_seconds": float(row.get("cpu_time") or 0)}
    return rows


def stage_outputs(project: Path, rule: str, rest: str) -> list[Path]:
    """The outputs a stage wrote (the paths of ``imgclf.paths``)."""
    if rule in ("train", "evaluate"):
        name, seed = rest.split("/")
        if rule == "train":
            return [project / f"models/{name}/{seed}", project / f"reports/live/{name}/{seed}"]
        return [project / f"reports/metrics/{name}/{seed}.json", project / f"reports/eval/{name}/{seed}",
                project / f"reports/eval/{name}/{seed}.confusion.csv"]
    if rule == "prepare":
        return [project / f"data/prepared/{rest}"]
    if rule == "download":
        return [project / f"data/raw/{rest}"]
    return [project / "reports/results.md", project / "reports/results.csv", project / "reports/figures"]


def median_seconds(cmd: list[str], cwd: Path, times: int = 3) -> float:
    return statistics.median(run(cmd, cwd) for _ in range(times))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="bench/out/paper_scale")
    parser.add_argument("--steps", type=int, default=3, help="mini-batches each experiment trains (one epoch)")
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--experiments", nargs="*", help="only these (default: every experiment of the full profile)")
    parser.add_argument("--record", default="bench/records", help="where the record goes")
    args = parser.parse_args()
    work = Path(args.workdir).resolve()
    sources = archives(work / "archives")

    project = work / "project"
    shutil.rmtree(project, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(project)], check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    log = work / "run.log"
    log.unlink(missing_ok=True)
    run(["imgclf", "params", "--profile", "full"], project, log)
    full = shown(project)
    chosen = args.experiments or full["experiments"]
    scale = {"experiments": chosen, "data": {"sources": sources}}
    for name in chosen:
        scale[name] = {"epochs": 1, "steps_per_epoch": args.steps, "threads": args.cores}
    (work / "scale.yaml").write_text(yaml.safe_dump(scale, sort_keys=False))
    run(["imgclf", "params", "--profile", str(work / "scale.yaml")], project, log)
    params = shown(project)

    env = {"IMGCLF_SLURM": "off"}
    started = time.perf_counter()
    run(["snakemake", "--cores", str(args.cores)], project, log, env)
    total, ended = time.perf_counter() - started, datetime.datetime.now().replace(microsecond=0)
    text = log.read_text()
    recorded = re.search(r"dvc\.lock: (\d+) stages recorded", text)
    if not recorded:
        raise SystemExit(f"{log}: the run did not record its stages in dvc.lock")
    # the end of the last job to the end of the run: onsuccess, i.e. `imgclf record` (dvc commit)
    stamps = [datetime.datetime.strptime(s, "%a %b %d %H:%M:%S %Y") for s in re.findall(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$", text, re.M)]
    end_of_jobs = max(stamps)

    stages = {}
    for key, row in benchmark_rows(project).items():
        rule, rest = key.split(" ", 1)
        row["output_mb"] = round(sum(size_of(path) for path in stage_outputs(project, rule, rest)) / 1e6, 1)
        if rule == "train":
            name, seed = rest.split("/")
            timings = json.loads((project / f"logs/timings/{name}/{seed}.train.json").read_text())
            train = json.loads((project / f"models/{name}/{seed}/train.json").read_text())
            row.update({key: timings[key] for key in ("train_seconds", "train_images_per_second", "trained_images",
                                                       "epoch_seconds", "fit_seconds", "step_seconds",
                                                       "recalibration_seconds")},
                       train_images=train["train_images"])
        stages[key] = row

    status = median_seconds(["dvc", "status"], project)
    dry = median_seconds(["snakemake", "-n", "--cores", str(args.cores)], project)
    record = {
        "date": datetime.date.today().isoformat(), "commit": commit, "uncommitted_changes": bool(dirty),
        "cpu_model": next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                           if line.startswith("model name")), "unknown"),
        "cores": args.cores, "steps_per_epoch": args.steps, "experiments": chosen,
        "sources": {name: {"size": entry["size"], "md5": entry["md5"]} for name, entry in sources.items()},
        "snakemake_seconds": round(total, 1), "jobs": len(stages),
        "record_seconds": (ended - end_of_jobs).total_seconds(), "stages_recorded": int(recorded.group(1)),
        "dvc_status_seconds": round(status, 2), "snakemake_dry_run_seconds": round(dry, 2),
        "disk_mb": {part: round(size_of(project / part) / 1e6, 1)
                    for part in ("data/raw", "data/prepared", "models", "reports", ".dvc/cache")},
        "archives_mb": round(sum(entry["size"] for entry in sources.values()) / 1e6, 1),
        "params": {name: params[name] for name in chosen},
        "full_params": {name: full[name] for name in chosen},  # the profile's own: what the projection is of
        "data": {name: params["data"][name] for name in ("imagenet200", "cifar10")},
        "stages": stages,
    }
    out = Path(args.record) / f"paper_scale-{record['date']}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        f"paper-scale rehearsal of {commit}{' (with uncommitted changes)' if dirty else ''}, {record['date']}",
        f"machine: {record['cpu_model']}, {args.cores} cores; training: {args.steps} steps of one epoch per experiment",
        f"command: python bench/bench_paper_scale.py --steps {args.steps} --cores {args.cores}",
        "",
        f"{'stage':<44} {'wall s':>8} {'peak RSS MB':>12} {'train img/s':>12} {'output MB':>10}",
    ]
    for key, row in stages.items():
        rate = row.get("train_images_per_second")
        lines.append(f"{key:<44} {row['seconds']:8.1f} {row['max_rss_mb']:12.0f} {rate if rate else '':>12} "
                     f"{row['output_mb']:10.1f}")
    peak = max(stages.values(), key=lambda row: row["max_rss_mb"])
    lines += [
        "",
        f"jobs {len(stages)}; snakemake {total:.0f} s; largest peak RSS {peak['max_rss_mb']:.0f} MB "
        f"({[k for k, v in stages.items() if v is peak][0]}; target < 8000)",
        f"imgclf record (dvc commit of {record['stages_recorded']} stages, hashing every output): "
        f"{record['record_seconds']:.0f} s",
        f"no-op on the full workspace: dvc status {status:.2f} s, snakemake -n {dry:.2f} s (median of 3)",
        "disk: " + ", ".join(f"{part} {mb:,.0f} MB" for part, mb in record["disk_mb"].items())
        + f"; the two archives {record['archives_mb']:,.0f} MB",
    ]
    out.with_suffix(".log").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    over = [key for key, row in stages.items() if row["max_rss_mb"] >= 8000]
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
