# Image-classification experiments: data -> train -> evaluate -> report.
# The same commands, paths and params as dvc.yaml (both come from src/imgclf/stages.py).
from snakemake.exceptions import WorkflowError

from imgclf import config as params_config, errors, experiments, stages


configfile: "params.yaml"


PARAMS_FILE = str((workflow.overwrite_configfiles or ["params.yaml"])[-1])
try:
    PARAMS = params_config.validate(config, PARAMS_FILE)
    if PARAMS != params_config.load(PARAMS_FILE):
        raise WorkflowError(
            f"--config overrides are not passed on to the stages; put them in a params file "
            f"and pass it with --configfile (stages read {PARAMS_FILE})"
        )
    stages.check_dvc_yaml(PARAMS, PARAMS_FILE)
except errors.PipelineError as exc:
    raise WorkflowError(str(exc)) from None
STAGES = stages.by_name(PARAMS, PARAMS_FILE)
EXPERIMENTS = list(experiments.EXPERIMENTS)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/experiments.smk"
include: "workflow/rules/report.smk"


localrules: all, sample, download


onstart:
    for path in stages.tidy(PARAMS, PARAMS_FILE):
        print(f"removed {path} (left by a killed run)")


onsuccess:
    record_in_dvc()


# every stage's outputs, not only the report's: a missing intermediate (a deleted or killed
# prepare or training output) is rebuilt, as `dvc repro` rebuilds it
rule all:
    input:
        [path for entry in STAGES.values() for path in entry.outs + entry.metrics],
