# Helpers shared by the rule files: every value comes from the stage table in imgclf.stages.
# Each rule spells out the command it runs; tests/test_stages.py checks that every job's command
# line is the one dvc.yaml runs for the same stage (plus Snakemake's --threads).
import os
import re
import subprocess
import time

from imgclf import datasets, experiments

STARTED = time.time()  # outputs written after this were written by this run's jobs
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


# each rule's stage, from its wildcards
def download_stage(wildcards):
    return DOWNLOAD_OF[wildcards.raw]


def prepare_stage(wildcards):
    return PREPARE_OF[wildcards.dataset]


def run_stage(kind):
    """The rule's stage of one (experiment, seed) run: train@<experiment>-s<seed>, evaluate@..."""
    return lambda wildcards: stage(stages.run_stage(kind, wildcards.experiment, int(wildcards.seed)))


train_stage, evaluate_stage = run_stage("train"), run_stage("evaluate")


# each rule's input function (unpack): its inputs by name, and its code
def download_inputs(wildcards):
    """The embedded sample, where that is the source (generated first), and the code."""
    entry = download_stage(wildcards)
    return {"sample": entry.item.get("sample", []), "code": entry.code}


def prepare_inputs(wildcards):
    """The archive, or for a folder read in place its listing (its digest, rewritten when it changes), and the code."""
    entry = prepare_stage(wildcards)
    return {"source": LISTINGS.get(wildcards.dataset) or entry.item["source"], "code": entry.code}


def run_inputs(stage_of):
    """A run's input function: its prepared data, for training the model it starts from
    (transfer, fine-tuning), and the code."""
    def inputs(wildcards):
        entry = stage_of(wildcards)
        return {"data": paths.prepared(entry.item["dataset"]), "upstream": entry.item.get("upstream", []),
                "code": entry.code}
    return inputs


def stage_params(stage_of):
    """A rule's params: ``settings``, what follows the stage's explicit paths on its command line
    (``--params FILE`` and the ``--config`` overrides it reads, as in dvc.yaml), and ``values``,
    what its result depends on: a change of either reruns it."""
    return {"settings": lambda wildcards: " ".join(stage_of(wildcards).settings),
            "values": lambda wildcards: VALUES.get(stage_of(wildcards).resolved, {})}


def cpus_per_gpu(wildcards):
    """Per-experiment cluster request: the experiment's threads on each GPU it asks for."""
    section = PARAMS[wildcards.experiment]
    return section["threads"] if section["gpus"] else 0


def upstream_flag(wildcards, input):
    """``--upstream <model dir>`` for a run that starts from another's model, else nothing."""
    return f" --upstream {input.upstream}" if input.upstream else ""


def record_in_dvc():
    """After a successful run, record in dvc.lock every stage whose outputs this run's jobs wrote
    (`imgclf record`). Skipped when the run overrode params.yaml (dvc.lock would record the wrong params)."""
    if OVERRIDES:
        print("note: not recording in dvc.lock: this run overrode params.yaml (--configfile, --config); to keep "
              "the change, put it in params.yaml, or run `dvc exp run -S key=value`")
        return
    names = sorted(name for name, entry in STAGES.items()
                   if any(os.path.exists(out) and os.stat(out).st_mtime >= STARTED for out in entry.outs))
    if names:
        print(subprocess.run(["imgclf", "record", *names], capture_output=True, text=True).stdout.strip())
