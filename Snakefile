# Image-classification experiments: data -> train -> evaluate -> report.
# The same commands, paths and params as dvc.yaml (both come from src/imgclf/stages.py).
from snakemake.exceptions import WorkflowError

from imgclf import config as params_config, errors, experiments, sources, stages


configfile: "params.yaml"


PARAMS_FILE = str((workflow.overwrite_configfiles or ["params.yaml"])[-1])
try:
    if len(workflow.overwrite_configfiles or []) > 1:
        # Snakemake would merge them; the stage commands and DVC read one params file
        raise errors.PipelineError(
            f"--configfile {' '.join(map(str, workflow.overwrite_configfiles))}: give one params file; to lay a "
            "profile over params.yaml: `imgclf params --profile NAME --out FILE`, then --configfile FILE")
    # `--config 'seed_cnn={epochs: 3}'`: applied to the params file, checked by the same schema, and
    # passed on (`--set`) to the stages that read those params; nothing else reruns
    RAW_PARAMS = params_config.read_raw(PARAMS_FILE)
    OVERRIDES = params_config.snakemake_overrides(workflow.config_settings.config, RAW_PARAMS)
    PARAMS = params_config.load_raw(RAW_PARAMS, PARAMS_FILE, OVERRIDES)
    if not OVERRIDES:
        stages.check_dvc_yaml(PARAMS, PARAMS_FILE)
except errors.PipelineError as exc:
    raise WorkflowError(str(exc)) from None
STAGES = stages.by_name(PARAMS, PARAMS_FILE, OVERRIDES)
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
        [path for entry in STAGES.values() for path in entry.products],
