"""The full reproduction's cluster requests and cost, from the latest paper-scale rehearsal record.

Reads ``bench/records/paper_scale-*.json`` (``bench/bench_paper_scale.py``: every stage at full data
size, training cut to a few steps) and projects each experiment's full run:

- training on the rehearsal's CPU = the stage's wall time in the rehearsal (start-up, data, graph
  building, one short epoch with its full validation pass, the final BatchNorm pass, the save)
  + the steps the rehearsal left out x the steady step time it measured
  + the validation passes of the epochs it left out (each as long as the measured one);
  fine-tuning counts k folds and the final fit, AutoKeras its trials and final fit;
- evaluation: measured as it is (it ran at full size);
- on one GPU: the training images over the img/s measured on an H200 (JAX backend, fp32 with XLA,
  ``bench/records/gpu_check-h200-jax.log``: seed_cnn 119,969, alexnet32 98,927, densenet121 7,565), the
  other models scaled from DenseNet-121 by their CPU step time; validation and evaluation at
  3x that rate (a forward pass); plus the CPU stage's start-up, data and save time;
- on 8 cores (``snakemake --cores 8``, the profile's 4 threads a job, two jobs side by side): the
  2-core figures halved (linear scaling from 2 to 4 threads: optimistic) and the DAG packed in two
  slots behind its longest chain.

AutoKeras' trials are not timed step by step (the search runs its own fits), so its CPU figure
scales the whole stage by its steps: an upper bound, marked so; its GPU figure takes DenseNet-121's
rate.

Measured stages replace projections: a record of the ``full`` profile's DAG run to its end
(``bench/records/full-*/run.json``, written by ``python bench/real_data.py --profile full``; each
job's wall seconds and peak RSS from Snakemake's benchmark files) gives an experiment's seed-0
train and evaluate stages as they ran, on the CPU (same core count as the rehearsal) or on the GPU
the record names. Each figure of the table says which it is: ``m`` measured, ``p`` projected.

``--write`` sets ``mem_mb`` (peak RSS x 1.5, rounded up to 500 MB) and ``runtime_min`` (the GPU
projection x 3 + 15 min, rounded up to 15 min: the profile asks for a GPU) of every experiment in
``config/full.yaml``. On a CPU partition (``gpus: 0``) a job needs the CPU projection instead.

    python tools/resources.py [--record bench/records/paper_scale-DATE.json] [--measured RUN.json ...] [--write]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

H200_IMG_S = {"seed_cnn": 119969, "seed_cnn_hwc": 119969, "alexnet32": 98927, "densenet121": 7565}
FORWARD_SPEEDUP = 3.0  # a forward pass (validation, evaluation) against a training step
GPU_MARGIN, GPU_SLACK_MIN = 3.0, 15  # x3: a cluster GPU slower than the H200 measured
FULL_PROFILE = Path("config/full.yaml")


def latest_record() -> Path:
    records = sorted(Path("bench/records").glob("paper_scale-*.json"))
    if not records:
        raise SystemExit("bench/records: no paper_scale-*.json; run bench/bench_paper_scale.py first")
    return records[-1]


def fits(name: str, full: dict, train_images: int) -> list[int]:
    """The training images of each fit a full run does: k folds and a final fit, trials and a final fit, or one."""
    if "kfold" in full:
        k = full["kfold"]
        return [train_images * (k - 1) // k] * k + [train_images]
    if "max_trials" in full:
        return [train_images] * (full["max_trials"] + 1)
    return [train_images]


def measured_stages(runs: list[dict], cores: int) -> dict[str, dict]:
    """Experiment -> the seed-0 train and evaluate stages of the ``full`` profile's finished runs
    (``bench/real_data.py``'s run.json): ``{"cpu" or "gpu": (train s, evaluate s, record)}`` and the
    peak RSS of the CPU run. A CPU run counts where it had the rehearsal's ``cores``; of several
    records of one device, the last given wins."""
    found: dict[str, dict] = {}
    for run in runs:
        if run.get("profile") != "full" or "up to date" not in run.get("dvc_status_after", ""):
            continue
        device = "gpu" if run.get("gpu") else "cpu"
        if device == "cpu" and run.get("cores") != cores:
            continue
        for job, row in run["jobs"].items():
            stage, name, seed = (job.split("/") + ["", ""])[:3]
            evaluate = run["jobs"].get(f"evaluate/{name}/seed0")
            if stage == "train" and seed == "seed0" and evaluate:
                entry = found.setdefault(name, {})
                entry[device] = (row["seconds"], evaluate["seconds"], run["source"])
                if device == "cpu":  # a job's memory request is host memory, as a CPU run uses it
                    entry["peak_rss_mb"] = max(row["max_rss_mb"] or 0, evaluate["max_rss_mb"] or 0)
    return found


def with_measurements(projected: dict[str, dict], measured: dict[str, dict]) -> dict[str, dict]:
    """``projected`` with each measured stage in place of its projection, and per figure its basis:
    ``cpu_basis``/``gpu_basis`` "m" (measured) or "p" (projected; evaluation on the CPU is measured
    at full size by the rehearsal itself, training is not)."""
    out = {}
    for name, row in projected.items():
        row = {**row, "cpu_basis": "p", "gpu_basis": "p", "sources": []}
        for device in ("cpu", "gpu"):
            if device in measured.get(name, {}):
                train_s, evaluate_s, source = measured[name][device]
                row.update({f"train_{device}_s": train_s, f"evaluate_{device}_s": evaluate_s, f"{device}_basis": "m"})
                row["sources"].append(source)
        if measured.get(name, {}).get("peak_rss_mb"):
            row["peak_rss_mb"] = measured[name]["peak_rss_mb"]
        out[name] = row
    return out


def project(record: dict) -> dict[str, dict]:
    stages, steps = record["stages"], record["steps_per_epoch"]
    step_of = {name: next((s for s in reversed(stages[f"train {name}/seed0"]["step_seconds"] or []) if s), None)
               for name in record["experiments"]}
    reference = step_of.get("densenet121")
    out = {}
    for name in record["experiments"]:
        train, evaluate = stages[f"train {name}/seed0"], stages[f"evaluate {name}/seed0"]
        full, batch = record["full_params"][name], record["full_params"][name]["batch_size"]
        n = train["train_images"]
        epochs = full["epochs"]
        epoch_s = [s for s in train["epoch_seconds"] if s is not None]
        fit_s = [s for s in train["fit_seconds"] if s is not None]
        val_s = (epoch_s[-1] - fit_s[-1]) if epoch_s and fit_s else 0.0
        sizes = fits(name, full, n)
        step = step_of[name]
        if step is None:  # AutoKeras: its trials' steps are not timed; the whole stage scales with its steps
            cpu = train["seconds"] * sum(epochs * math.ceil(size / batch) for size in sizes) / (steps * len(sizes))
        else:
            left = sum(epochs * math.ceil(size / batch) - steps for size in sizes)
            cpu = train["seconds"] + left * step + (epochs - 1) * val_s * len(sizes)
        gpu_rate = H200_IMG_S.get(name)
        if gpu_rate is None:
            scale = (reference / step) if reference and step else 1.0
            gpu_rate = H200_IMG_S["densenet121"] * scale
        overhead = max(train["seconds"] - sum(epoch_s) - (train["recalibration_seconds"] or 0), 0.0)
        forward = (record["data_val_images"].get(name, 0) * epochs * len(sizes)
                   + min(n, 10000)) / (gpu_rate * FORWARD_SPEEDUP)
        gpu = overhead + sum(epochs * size for size in sizes) / gpu_rate + forward
        eval_forward = evaluate.get("test_images", 10000) / (gpu_rate * FORWARD_SPEEDUP)
        out[name] = {
            "peak_rss_mb": max(train["max_rss_mb"], evaluate["max_rss_mb"]),
            "train_cpu_s": cpu, "evaluate_cpu_s": evaluate["seconds"],
            "train_gpu_s": gpu, "evaluate_gpu_s": overhead + eval_forward,
            "steady_img_s": (batch / step) if step else None, "gpu_img_s": gpu_rate,
        }
    return out


def dag_hours(record: dict, projected: dict, key: str, slots: int, speedup: float) -> float:
    """The whole DAG's wall time: data stages, every experiment, the report; in ``slots`` parallel
    jobs, no shorter than its longest chain (densenet201 -> transfer -> fine-tune)."""
    data = sum(row["seconds"] for stage, row in record["stages"].items() if not stage.startswith(("train", "evaluate")))
    jobs = {name: (row[f"train_{key}_s"] + row[f"evaluate_{key}_s"]) / speedup for name, row in projected.items()}
    chain = sum(jobs.get(name, 0) for name in ("densenet201", "cifar_densenet201_transfer", "cifar_densenet201_finetune"))
    return (data + max(sum(jobs.values()) / slots, chain)) / 3600


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", type=Path, default=None)
    parser.add_argument("--measured", type=Path, nargs="*", default=None,
                        help="run.json records of the full profile (default: bench/records/full-*/run.json)")
    parser.add_argument("--write", action="store_true", help=f"set mem_mb and runtime_min in {FULL_PROFILE}")
    args = parser.parse_args()
    path = args.record or latest_record()
    record = json.loads(path.read_text())
    runs = [{**json.loads(run.read_text()), "source": str(run)}
            for run in (args.measured if args.measured is not None else sorted(Path("bench/records").glob("full-*/run.json")))]
    val = {"imagenet200": 0.1 * 100000, "cifar10": 0.1 * 50000}  # data.val_fraction of the training split
    record["data_val_images"] = {name: val["cifar10" if name.startswith("cifar") else "imagenet200"]
                                 for name in record["experiments"]}
    projected = with_measurements(project(record), measured_stages(runs, record["cores"]))
    print(f"projection of the full reproduction from {path} (commit {record['commit'][:10]}, "
          f"{record['cpu_model']}, {record['cores']} cores); measured stages: "
          f"{', '.join(sorted({s for row in projected.values() for s in row['sources']})) or 'none'}\n")
    print(f"{'experiment':<28} {'peak RSS MB':>11} {'mem_mb':>7} {'CPU h (2 cores)':>17} {'GPU h':>9} "
          f"{'runtime_min':>11} {'img/s CPU':>10}")
    requests = {}
    for name, row in projected.items():
        mem = max(1000, math.ceil(row["peak_rss_mb"] * 1.5 / 500) * 500)
        runtime = math.ceil((row["train_gpu_s"] / 60 * GPU_MARGIN + GPU_SLACK_MIN) / 15) * 15
        requests[name] = {"mem_mb": mem, "runtime_min": runtime}
        rate = f"{row['steady_img_s']:.0f}" if row["steady_img_s"] else "-"
        bound = "<=" if row["steady_img_s"] is None else ""
        print(f"{name:<28} {row['peak_rss_mb']:11.0f} {mem:7d} {bound:>3}{(row['train_cpu_s'] + row['evaluate_cpu_s']) / 3600:12.1f} "
              f"{row['cpu_basis']} {(row['train_gpu_s'] + row['evaluate_gpu_s']) / 3600:7.2f} {row['gpu_basis']} "
              f"{runtime:11d} {rate:>10}")
    print(f"\nwhole DAG: {dag_hours(record, projected, 'cpu', 1, 1):.0f} h on {record['cores']} CPU cores, "
          f"{dag_hours(record, projected, 'cpu', 2, 2):.0f} h on 8 cores (snakemake --cores 8), "
          f"{dag_hours(record, projected, 'gpu', 1, 1):.1f} h on one GPU")
    print("m: a measured stage (the record named above); p: projected as this script's docstring says "
          "(CPU: training projected from the rehearsal's steps, evaluation measured in it; GPU: bare models' H200 img/s)")
    disk = record["disk_mb"]
    print(f"disk: archives {record['archives_mb']:,.0f} MB (+ the downloaded copies {disk['data/raw']:,.0f} MB), "
          f"prepared {disk['data/prepared']:,.0f} MB, models {disk['models']:,.0f} MB, reports {disk['reports']:,.0f} MB, "
          f"DVC cache {disk['.dvc/cache']:,.0f} MB")
    if args.write:
        from ruamel.yaml import YAML

        yaml = YAML()
        yaml.width = 200
        from imgclf import config

        document = yaml.load(FULL_PROFILE.read_text())
        base = config.load("params.yaml")  # a profile states only what differs from params.yaml
        for name, values in requests.items():
            for key, value in values.items():
                if value == base[name][key]:
                    document[name].pop(key, None)
                else:
                    document[name][key] = value
        with open(FULL_PROFILE, "w") as handle:
            yaml.dump(document, handle)
        print(f"{FULL_PROFILE}: mem_mb and runtime_min of {len(requests)} experiments written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
