# Helpers shared by the rule files: every value comes from the stage table in imgclf.stages.
# Each rule spells out the command it runs; tests/test_stages.py checks that every job's command
# line is the one dvc.yaml runs for the same stage (plus Snakemake's --threads).
import os
import re
import shlex
import subprocess

from imgclf import datasets, experiments

EXPERIMENTS = list(experiments.EXPERIMENTS)
UPSTREAMS = {experiments.EXPERIMENTS[name].upstream for name in PARAMS["experiments"]}
SAMPLE_OF = {sample.filename: name for name, sample in datasets.SAMPLES.items()}
# the archives the download stages write (data/raw/<dataset>.<suffix>) -> their stage
DOWNLOAD_OF = {os.path.basename(s.outs[0]): s for s in STAGES.values() if s.command[0] == "download"}
PREPARE_OF = {s.key: s for s in STAGES.values() if s.command[0] == "prepare"}  # prepare or prepare_folder


wildcard_constraints:
    filename="|".join(map(re.escape, SAMPLE_OF)),
    raw="|".join(map(re.escape, DOWNLOAD_OF)) or "(?!)",
    dataset="|".join(datasets.DATASETS),
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
    if name not in STAGES:  # a target params do not ask for, e.g. a seed not in the experiment's seeds
        raise WorkflowError(f"{name}: not a stage of these params (`imgclf params --show` lists experiments and seeds)")
    return STAGES[name]


def run_stage(kind, wildcards):
    """The stage of one (experiment, seed) run: train@<experiment>-s<seed>, evaluate@..."""
    return stage(stages.run_stage(kind, wildcards.experiment, int(wildcards.seed)))


def values(entry):
    """The values a stage's result depends on (its config/resolved file): a change reruns it."""
    return VALUES.get(entry.resolved, {})


def settings(entry):
    """What follows a stage's explicit paths on its command line: ``--params FILE`` and the
    ``--config`` overrides it reads (``--set``), as in dvc.yaml."""
    return " ".join(entry.settings)


def upstream_flag(wildcards, input):
    """``--upstream <model dir>`` for a run that starts from another's model, else nothing."""
    return f" --upstream {input.upstream}" if input.upstream else ""


def record_in_dvc():
    """After a successful run, record every stage it ran in dvc.lock (`imgclf record`). Skipped when
    the run overrode params.yaml (dvc.lock would record the wrong params)."""
    if OVERRIDES:
        print("note: not recording in dvc.lock: this run overrode params.yaml (--configfile, --config); to keep "
              "the change, put it in params.yaml, or run `dvc exp run -S key=value`")
        return
    stage_of = {out: name for name, entry in STAGES.items() for out in entry.outs}
    names = sorted({stage_of[str(f)] for job in workflow.dag.jobs for f in job.output if str(f) in stage_of})
    if names:
        print(subprocess.run(["imgclf", "record", *names], capture_output=True, text=True).stdout.strip())
