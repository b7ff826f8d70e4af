# Image-classification experiments: data -> train -> evaluate -> report.
# The same commands, paths and params as dvc.yaml (the stage table: src/imgclf/stages.py).
import os

from snakemake.exceptions import WorkflowError

from imgclf import config as params_config, errors, overrides, paths, resolved, stages


# read by the project's loader first: it refuses in one line what Snakemake's own reading of the
# file (configfile) would take endlessly, such as aliases that expand to billions of values
try:
    RAW_PARAMS = params_config.read_raw(paths.PARAMS_FILE)
except errors.PipelineError as exc:
    raise WorkflowError(str(exc)) from None


configfile: "params.yaml"


# `--configfile FILE` lays FILE over params.yaml and `--config key=value` goes on top, as in any
# Snakemake workflow: what `config` then holds that differs from params.yaml is checked by the
# same schema and passed on (`--set`) to the stages that read it; nothing else reruns
try:
    OVERRIDES = overrides.config_overrides(config, RAW_PARAMS)
    PARAMS = params_config.load(paths.PARAMS_FILE, OVERRIDES, RAW_PARAMS)
    LISTINGS = stages.write_listings(PARAMS, stages.source_listings(PARAMS, paths.PARAMS_FILE))  # folder sources read in place
    if not OVERRIDES:
        resolved.check_runs(PARAMS, paths.PARAMS_FILE)
except errors.PipelineError as exc:
    raise WorkflowError(str(exc)) from None
STAGES = stages.by_name(PARAMS, OVERRIDES)
VALUES = resolved.stage_values(PARAMS)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/experiments.smk"
include: "workflow/rules/report.smk"


localrules: all, sample, download


onstart:
    for path in stages.tidy(PARAMS):
        print(f"removed {path} (left by a killed run)")


onsuccess:
    record_in_dvc()
    if os.path.exists(paths.REPORT_OUTS[1]):
        from imgclf import report

        print("\n".join(report.summary_of(paths.REPORT_OUTS[1])))


# every stage's outputs, not only the report's: a missing intermediate (a deleted or killed
# prepare or training output) is rebuilt, as `dvc repro` rebuilds it
rule all:
    input:
        [path for entry in STAGES.values() for path in entry.outs],
