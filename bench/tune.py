"""Recipe search on the validation split: for each variant, ``imgclf train`` one experiment (its
params from a params file, the variant's ``--set`` overrides laid over them) and append what the
validation split said, epoch by epoch, to a TSV record. The test split is never read: the stage
that scores it, ``imgclf evaluate``, is not run.

    python bench/tune.py seed_cnn --params params.yaml --data data/prepared/imagenet200 \\
        --record bench/records/tune-fashion.tsv --variant "epochs=15" --variant "epochs=15 lr_schedule=cosine"

A variant is ``key=value`` pairs of the experiment's section, separated by spaces. Each trains in
its own scratch directory (its own resume state), ``--jobs`` at a time with ``--threads`` each.
Columns: date, CPU, experiment, data, variant, seed, epochs, the last and the best validation
top-1 (with its epoch), the training seconds, and the validation top-1 of every epoch."""

import argparse
import concurrent.futures
import datetime
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

COLUMNS = ["date", "cpu", "experiment", "data", "variant", "seed", "epochs", "val_top1_last", "val_top1_best",
           "best_epoch", "train_seconds", "val_top1_by_epoch"]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def run_variant(args, variant: str, upstream: str | None) -> dict:
    sets = [f"{args.experiment}.{pair}" for pair in variant.split()]
    with tempfile.TemporaryDirectory(prefix="tune.", dir=args.scratch and Path(args.scratch).resolve()) as work:
        command = [sys.executable, "-m", "imgclf", "train", args.experiment, "--seed", str(args.seed),
                   "--data", str(Path(args.data).resolve()), "--out", f"{work}/model", "--threads", str(args.threads),
                   "--params", str(Path(args.params).resolve()), *(f"--set={item}" for item in sets)]
        if upstream:
            command += ["--upstream", str(Path(upstream).resolve())]
        result = subprocess.run(command, cwd=work, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"{args.experiment} [{variant}]: imgclf train failed:\n{result.stderr[-3000:]}")
        meta = json.loads(Path(work, "model", "train.json").read_text())
        timings = json.loads(next(Path(work, "logs", "timings").rglob("*.json")).read_text())
    history = [row["val_accuracy"] for row in meta["history"]]
    best = max(range(len(history)), key=history.__getitem__)
    return {"date": datetime.date.today().isoformat(), "cpu": cpu_model(), "experiment": args.experiment,
            "data": args.data, "variant": variant or "(params as given)", "seed": args.seed, "epochs": len(history),
            "val_top1_last": f"{history[-1]:.4f}", "val_top1_best": f"{history[best]:.4f}", "best_epoch": best + 1,
            "train_seconds": f"{timings['train_seconds']:.0f}",
            "val_top1_by_epoch": " ".join(f"{value:.4f}" for value in history)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment")
    parser.add_argument("--params", required=True)
    parser.add_argument("--data", required=True, help="prepared data directory")
    parser.add_argument("--upstream", help="model directory a transfer or fine-tuning experiment starts from")
    parser.add_argument("--record", required=True, help="TSV to append to")
    parser.add_argument("--variant", action="append", default=[], help="'key=value key=value' (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scratch", default=None, help="where the runs train (default: the temporary directory)")
    args = parser.parse_args()
    record = Path(args.record)
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_variant, args, variant, args.upstream) for variant in args.variant or [""]]
        for future in concurrent.futures.as_completed(futures):
            row = future.result()
            new = not record.exists()
            with record.open("a") as out:
                if new:
                    out.write("\t".join(COLUMNS) + "\n")
                out.write("\t".join(str(row[column]) for column in COLUMNS) + "\n")
            print("\t".join(str(row[column]) for column in COLUMNS[2:]), flush=True)


if __name__ == "__main__":
    main()
