"""dvc.yaml's check_params stage: params.yaml is checked before any stage runs, and each stage's
params are written out with their values, defaults filled in, one JSON file per stage
(``config/resolved/<kind>/<name>.json``) holding exactly what changes its result. Each stage of
dvc.yaml depends on its own file; the Snakemake rules track the same values as params. So a
changed value, stated in params.yaml or left to a default in the registry, reruns exactly the
stages that read it.

The run list (``config/runs.yaml``, dvc.yaml's vars) is written by ``imgclf runs``; both engines
refuse to start while it is out of date with params.yaml. ``imgclf record STAGE...`` records the
stages a Snakemake run ran in dvc.lock, these files included (Snakemake's ``onsuccess``)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import yaml

from imgclf import experiments, paths, stages
from imgclf.errors import PipelineError
from imgclf.io_utils import write_text


def stage_values(params: dict) -> dict[str, dict]:
    """Each resolved file -> its content: its params' values, and for training the experiment's
    record (model, kind, data set, model module), which changes a result as much as a param."""
    values = {path: {key: stages.value_of(params, key) for key in keys} for path, keys in stages.stage_keys(params).items()}
    for name in experiments.selected(params):
        values[paths.resolved_file("train", name)]["experiment"] = experiments.EXPERIMENTS[name].record()
    return values


def write_checked(params: dict, resolved_dir: str = paths.RESOLVED_DIR) -> None:
    """check_params' output: each stage's resolved file, written only where its bytes differ (no
    needless new file time); files of stages no longer asked for are removed."""
    root = Path(resolved_dir)
    wanted = {root / Path(path).relative_to(paths.RESOLVED_DIR): json.dumps(value, indent=2, sort_keys=True) + "\n"
              for path, value in stage_values(params).items()}
    for path, text in wanted.items():
        if not path.exists() or path.read_text() != text:
            write_text(path, text)
    for path in root.rglob("*.json") if root.is_dir() else []:
        if path not in wanted:
            path.unlink()


def runs_text(params: dict) -> str:
    header = ("# dvc.yaml's vars: the stages of each foreach family that params.yaml asks for.\n"
              "# Written by `imgclf runs` from params.yaml; do not edit (both engines refuse a stale one).\n")
    return header + yaml.safe_dump(stages.runs_vars(params), sort_keys=False, width=200, default_flow_style=None)


def check_runs(params: dict, params_file: str, path: str = paths.RUNS_FILE) -> None:
    """``config/runs.yaml`` lists the stages of params.yaml: after a change of the experiments, their
    seeds or a source it must be written again, or DVC would run another set of stages than
    Snakemake. Checked where both engines start; only for params.yaml, the file dvc.yaml reads."""
    if Path(params_file).resolve() != Path(paths.PARAMS_FILE).resolve() or not Path(path).exists():
        return
    if Path(path).read_text() != runs_text(params):
        raise PipelineError(f"{path}: out of date with {params_file} (experiments, seeds or sources changed); "
                            "run `imgclf runs`")


def record(params: dict, names: list[str]) -> str:
    """Commit ``names`` (and check_params, whose files are written first) to dvc.lock; returns
    what was done, one line. Outside a DVC repository nothing is done."""
    if not Path(".dvc").is_dir() or shutil.which("dvc") is None:
        return "not a DVC repository: nothing recorded"
    table = stages.by_name(params)
    unknown = sorted(set(names) - set(table))
    if unknown:
        return f"not recording in dvc.lock: {', '.join(unknown)} not in {paths.RUNS_FILE} (run `imgclf runs`)"
    # check_params' outputs: every stage's params values (the Snakefile checked params.yaml already)
    write_checked(params)
    # dvc commit moves outputs into its cache and links or copies them back: new file times. Put the
    # old ones back, or Snakemake would see inputs newer than outputs next time.
    times = {}
    for top in (Path(out) for name in names for out in table[name].outs):
        for path in [top, *(top.rglob("*") if top.is_dir() else [])]:
            if path.exists():
                times[path] = path.stat()
    result = subprocess.run(["dvc", "commit", "--force", "check_params", *names], capture_output=True, text=True)
    for path, stat in sorted(times.items(), key=lambda item: -len(item[0].parts)):  # files before their dirs
        if path.exists():
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    if result.returncode != 0:
        lines = (result.stderr + result.stdout).strip().splitlines() or [f"exit status {result.returncode}"]
        reason = next((line for line in lines if line.startswith("ERROR")), lines[-1])
        return f"warning: dvc commit failed; dvc.lock not updated: {reason} (then run `make sync` or `dvc commit`)"
    return f"dvc.lock: {len(names)} stages recorded"
