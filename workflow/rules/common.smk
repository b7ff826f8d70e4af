# Helpers shared by the rule files: every value comes from the stage table in imgclf.stages.
# Each rule spells out the command it runs; tests/test_stages.py checks that every job's command
# line is the one dvc.yaml runs for the same stage (plus Snakemake's --threads).
import os
import re
import shutil
import subprocess
from pathlib import Path

ARCHIVE_OF = {filename: archive for archive, filename in stages.ARCHIVES.items()}
# the archives the download stages write (data/raw/<dataset>.<suffix>) -> their data set
DATASET_OF_RAW = {Path(s.outs[0]).name: s.command[1] for s in STAGES.values() if s.name.startswith("download_")}
EXPERIMENT_OF = experiments.EXPERIMENTS


wildcard_constraints:
    filename="|".join(map(re.escape, ARCHIVE_OF)),
    raw="|".join(map(re.escape, DATASET_OF_RAW)) or "(?!)",
    dataset="|".join(sources.DATASETS),
    experiment="|".join(EXPERIMENTS),
    seed=r"\d+",


# cluster partition and account come from the environment (sbatch's own variable names), never
# from the workflow; on the command line: --set-resources <rule>:slurm_partition=...
CLUSTER = {
    resource: os.environ[variable]
    for resource, variable in (("slurm_partition", "SBATCH_PARTITION"), ("slurm_account", "SBATCH_ACCOUNT"))
    if os.environ.get(variable)
}


def stage(name):
    return STAGES[name]


def run_stage(kind, wildcards):
    """The stage name of one (experiment, seed) run: train_<experiment>_s<seed>."""
    return stages.run_stage(kind, wildcards.experiment, int(wildcards.seed))


def stage_params(name):
    """The values of the params a stage reads: a change in them reruns the stage."""
    values = {}
    for key in stage(name).params:
        node = PARAMS
        for part in key.split("."):
            node = node[part]
        values[key] = node
    return values


def settings(name):
    """What follows a stage's explicit paths on its command line: ``--params FILE`` and the
    ``--config`` overrides it reads (``--set``), as in dvc.yaml."""
    return " ".join(stage(name).settings)


def upstream_flag(wildcards, input):
    """``--upstream <model dir>`` for a run that starts from another's model (its ``upstream``
    input), else nothing."""
    return f" --upstream {input.upstream}" if input.upstream else ""


def record_in_dvc():
    """After a successful run, record every stage of this run's DAG in dvc.lock (``dvc commit``:
    hashes only, no retraining), so ``dvc status`` is clean and ``dvc metrics diff`` and
    ``dvc push`` see the results. Skipped outside a DVC repository and when the run read another
    params file than the one dvc.yaml names, or overrode it (dvc.lock would record the wrong params)."""
    if not Path(".dvc").is_dir() or shutil.which("dvc") is None:
        return
    if Path(PARAMS_FILE).resolve() != Path("params.yaml").resolve():
        print(f"note: not recording in dvc.lock: this run read {PARAMS_FILE}, dvc.yaml reads params.yaml")
        return
    if OVERRIDES:
        print("note: not recording in dvc.lock: this run overrode params.yaml with --config "
              "(to keep the change: put it in params.yaml, or run `dvc exp run -S key=value`)")
        return
    stage_of = {out: name for name, entry in STAGES.items() for out in entry.products}
    names = sorted({stage_of[str(f)] for job in workflow.dag.jobs for f in job.output if str(f) in stage_of})
    if not names:
        return
    # dvc.yaml's check_params stage (its stamp, every param's value): the Snakefile checked the
    # same params.yaml before any job
    stages.write_checked(PARAMS)
    # dvc commit moves outputs into its cache and links or copies them back: new file times.
    # Put the old ones back, or Snakemake would see inputs newer than outputs next time.
    times = {}
    for name in names:
        for out in STAGES[name].products:
            top = Path(out)
            for path in [top, *(top.rglob("*") if top.is_dir() else [])]:
                if path.exists():
                    times[path] = path.stat()
    result = subprocess.run(["dvc", "commit", "--force", stages.CHECK_STAGE, *names], capture_output=True, text=True)
    for path, stat in sorted(times.items(), key=lambda item: -len(item[0].parts)):  # files before their dirs
        if path.exists():
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    if result.returncode != 0:
        lines = (result.stderr + result.stdout).strip().splitlines() or [f"exit status {result.returncode}"]
        reason = next((line for line in lines if line.startswith("ERROR")), lines[-1])
        print(f"warning: dvc commit failed; dvc.lock not updated: {reason} (then run `make sync` or `dvc commit`)")
