"""``imgclf``: one subcommand per pipeline stage, explicit paths in and out. Snakemake rules and
DVC stages call exactly these commands. Heavy modules (TensorFlow) load only where needed."""

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

import yaml

from imgclf import config, datasets, experiments, overrides, paths, resolved, runtime, stages
from imgclf.errors import PipelineError
from imgclf.io_utils import DISK_FULL, proc_stat, write_text


def _write_generated(path: str, text: str, check: bool, how: str) -> None:
    """Write a generated file, or with ``check`` fail if the committed one differs."""
    if not check:
        write_text(path, text)
    elif not Path(path).exists() or Path(path).read_text() != text:
        raise PipelineError(f"{path}: out of date; run `{how}`")


def _params(args) -> dict:
    return config.load(args.params, overrides.parse_sets(args.set))


def cmd_schema(args) -> None:
    _write_generated(args.out, config.schema_json(), args.check, f"imgclf schema --out {args.out}")


def cmd_check_params(args) -> None:
    params = _params(args)
    stages.source_listings(params, args.params)
    if args.resolved:
        resolved.check_runs(params, args.params)
        resolved.write_checked(params, args.resolved)
    print(f"{args.params}: valid")


def cmd_params(args) -> None:
    if args.show:
        print(yaml.safe_dump(_params(args), sort_keys=False, width=120), end="")
        return
    if not args.profile:
        raise PipelineError("params: give --profile NAME (config/NAME.yaml) or --show")
    if args.set:
        raise PipelineError("params --profile: --set applies to --show only; put the value in the profile or params file")
    out = args.out or args.params
    text, params = config.apply_profile(args.params, args.profile)
    write_text(out, text)
    print(f"{out}: {args.params} with {config.profile_path(args.profile)} laid over it")
    if Path(out).resolve() == Path(paths.PARAMS_FILE).resolve() and Path("dvc.yaml").exists():
        write_text(paths.RUNS_FILE, resolved.runs_text(params))
        print(f"{paths.RUNS_FILE}: written for it (`imgclf runs`)")


def cmd_make_sample(args) -> None:
    from imgclf import sample
    sample.MAKERS[args.dataset](args.out)


def cmd_download(args) -> None:
    from imgclf import download
    params = _params(args)
    name, entry = datasets.source_of(args.dataset, params["data"])
    if datasets.read_in_place(entry):
        raise PipelineError(f"data.sources.{name}: a folder source is read in place; nothing to download")
    url = entry.get("url") or f"file:{entry['path']}"
    download.download(url, args.out, entry["md5"], entry["size"], progress=not args.quiet,
                      deadline=params["data"]["download_deadline_s"])
    print(f"{args.out}: source {name}, {entry['size']:,} bytes, MD5 {entry['md5']} verified")


def cmd_prepare(args) -> None:
    data = _params(args)["data"]
    layout = datasets.layout_module(datasets.source_of(args.dataset, data)[1]["layout"])
    meta = layout.prepare(Path(args.source), args.out, datasets.settings(args.dataset, data), runtime.threads(args.threads))
    print(f"{args.out}: {meta['train_images']} train, {meta['val_images']} val, {meta['test_images']} test images, "
          f"{meta['n_classes']} classes at {meta['image_size']}x{meta['image_size']}")


def cmd_train(args) -> None:
    params = _params(args)
    experiment, section = experiments.get(args.experiment), params[args.experiment]
    runtime.select_backend(section["backend"])
    from imgclf import train
    seed = runtime.seed(args.seed, section)
    meta = train.run(experiment, args.data, args.out, section, experiments.result_params(section),
                     runtime.threads(args.threads, section), seed, args.upstream, args.live, args.tensorboard,
                     paths.timings_file(experiment.name, seed, "train"))
    print(f"{args.out}: {meta['epochs']} epochs on {meta['train_images']} images in {meta['train_seconds']:.1f} s "
          f"({meta['device']}, {meta['params']:,} parameters)")


def cmd_evaluate(args) -> None:
    experiment, section = experiments.get(args.experiment), _params(args)[args.experiment]
    runtime.select_backend(section["backend"])
    from imgclf import evaluate
    seed = runtime.seed(args.seed, section)
    metrics = evaluate.run(experiment, args.data, args.model, args.metrics, args.out, runtime.threads(args.threads, section),
                           section, seed, args.confusion,
                           timings_path=paths.timings_file(experiment.name, seed, "evaluate"))
    print(f"{args.metrics}: top-1 {metrics['top1']:.4f}, top-5 {metrics['top5']:.4f}, loss {metrics['loss']:.4f} "
          f"on {metrics['test_images']} test images; train top-1 {metrics['train_top1']:.4f}")


def cmd_report(args) -> None:
    from imgclf import report
    table = report.run(args.metrics_dir, args.live_dir, args.eval_dir, args.out, _params(args))
    print("\n".join(report.summary(table, args.out)))


def cmd_tidy(args) -> None:
    params = _params(args)
    stages.check_clock(params)
    for path in stages.tidy(params):
        print(f"removed {path} (left by a killed run)")


def cmd_runs(args) -> None:
    _write_generated(args.out, resolved.runs_text(_params(args)), args.check, "imgclf runs")


def cmd_record(args) -> None:
    print(resolved.record(_params(args), args.stages))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgclf", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, func, help_text, params=True):
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(func=func)
        if params:
            p.add_argument("--params", default=paths.PARAMS_FILE, help="params file (default: params.yaml)")
            p.add_argument("--set", action="append", metavar="KEY=VALUE",
                           help="override one param (dotted key, YAML value), checked like the file; repeatable")
        return p

    p = add("schema", cmd_schema, "write the JSON Schema of params.yaml", params=False)
    p.add_argument("--out", default="workflow/schemas/params.schema.json")
    p.add_argument("--check", action="store_true", help="fail if the file is out of date")

    p = add("check-params", cmd_check_params, "validate a params file")
    p.add_argument("--resolved", help="on success, write each stage's params with their values (defaults filled in), "
                                      "one JSON file per stage, in this directory (dvc.yaml's check_params stage)")

    p = add("params", cmd_params, "lay a profile (config/NAME.yaml: what differs from params.yaml) over "
                                  "the params file, or show every param with its value")
    p.add_argument("--profile", help="NAME (config/NAME.yaml, e.g. full, ci) or a path to an overlay file")
    p.add_argument("--out", help="file to write (default: the --params file itself)")
    p.add_argument("--show", action="store_true", help="print every param with its value (defaults filled in), as YAML")

    p = add("make-sample", cmd_make_sample, "generate an embedded sample archive", params=False)
    p.add_argument("dataset", choices=list(datasets.SAMPLES))
    p.add_argument("--out", required=True)

    p = add("download", cmd_download, "download and verify the archive of a data set's source")
    p.add_argument("dataset", choices=list(datasets.DATASETS))
    p.add_argument("--out", required=True)
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = add("prepare", cmd_prepare, "archive or image folder -> resized, subset arrays")
    p.add_argument("dataset", choices=list(datasets.DATASETS))
    p.add_argument("--source", required=True, help="archive (zip / tar.gz) or, for imagenet200, an image folder")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--threads", type=int, default=0, help="worker processes (default: all cores)")

    p = add("train", cmd_train, "train one registered experiment")
    p.add_argument("experiment")
    p.add_argument("--data", required=True, help="prepared data directory")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--upstream", help="model directory this experiment starts from (transfer, fine-tuning)")
    p.add_argument("--live", help="DVCLive directory for per-epoch metrics and plots (rewritten each epoch)")
    p.add_argument("--tensorboard", help="TensorBoard log directory (rewritten each epoch)")
    p.add_argument("--seed", type=int, default=None, help="run seed (default: the experiment's first seed)")
    p.add_argument("--threads", type=int, default=0, help="TensorFlow threads (default: the experiment's threads param)")

    p = add("evaluate", cmd_evaluate, "evaluate a trained model on the test split")
    p.add_argument("experiment")
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--metrics", required=True, help="metrics JSON to write")
    p.add_argument("--seed", type=int, default=None, help="seed the model was trained with (default: the first seed)")
    p.add_argument("--out", required=True, help="details directory to write")
    p.add_argument("--confusion", help="CSV of (actual, predicted) pairs to write, for `dvc plots`")
    p.add_argument("--threads", type=int, default=0, help="TensorFlow threads (default: the experiment's threads param)")

    p = add("report", cmd_report, "gather every experiment's metrics into reports/")
    p.add_argument("--metrics-dir", required=True)
    p.add_argument("--live-dir", required=True, help="DVCLive directories of the training runs")
    p.add_argument("--eval-dir", required=True)
    p.add_argument("--out", required=True)

    add("tidy", cmd_tidy, "refuse stage files dated in the future (clock skew); remove the temporaries "
                          "killed runs left beside the stage outputs (each stage also removes its own when it runs)")

    p = add("runs", cmd_runs, "write config/runs.yaml (dvc.yaml's vars: the stages params.yaml asks for)")
    p.add_argument("--out", default="config/runs.yaml")
    p.add_argument("--check", action="store_true", help="fail if the file is out of date")

    p = add("record", cmd_record, "record the stages a Snakemake run ran in dvc.lock (dvc commit)")
    p.add_argument("stages", nargs="*", help="DVC stage names (train@seed_cnn-s0, ...)")
    return parser


def _parent_of(pid: int) -> int | None:
    """The parent of ``pid`` (from /proc), or None where it has gone or /proc cannot say."""
    try:
        return int(proc_stat(pid)[1])
    except (OSError, IndexError, ValueError):
        return None


def _runs_the_stage(pid: int) -> bool:
    """Whether process ``pid`` was started with DVC's stage environment (DVC_STAGE): the shell DVC
    runs a stage's command in, not DVC itself."""
    try:
        return b"\0DVC_STAGE=" in b"\0" + Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False


def launcher_chain() -> list[tuple[int, int]]:
    """(process, its parent) pairs from this process up to the program that started the stage.
    DVC runs a stage's command with ``$SHELL -c`` (``/bin/sh -c`` where SHELL is unset) and gives
    that shell its stage environment: bash runs a lone command in its own place, while dash (and
    other shells) stay between as the stage's parent, so the walk passes over every ancestor that
    carries DVC_STAGE."""
    chain = [(os.getpid(), os.getppid())]
    while chain[-1][1] > 1 and _runs_the_stage(chain[-1][1]):
        shell = chain[-1][1]
        parent = _parent_of(shell)
        if parent is None:
            return chain[:1]
        chain.append((shell, parent))
    return chain


def stop_with_parent(poll_s: float = 1.0) -> None:
    """Under DVC (which names the stage in DVC_STAGE), end this process (SIGTERM) once the program
    that started it has gone: ``dvc repro`` exits at once on SIGTERM, leaving its stage running
    outside its control. Snakemake waits for its jobs, and a command a user starts by hand (say under
    ``nohup``) is left alone. An orphan is handed to another parent, which is what the watch notices,
    on this process or on a shell between it and DVC (``launcher_chain``)."""
    if "DVC_STAGE" not in os.environ or any(t.name == "stop-with-parent" for t in threading.enumerate()):
        return
    chain = launcher_chain()
    if chain[-1][1] == 1:
        return
    shells = chain[1:]

    def watch() -> None:
        while os.getppid() == chain[0][1] and all(_parent_of(pid) == parent for pid, parent in shells):
            time.sleep(poll_s)
        print(f"error: the process that started this stage (pid {chain[-1][1]}) has ended; stopping",
              file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="stop-with-parent", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stop_with_parent()
    try:
        args.func(args)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        print(f"error: {exc.filename or 'output'}: no space left on device", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0
