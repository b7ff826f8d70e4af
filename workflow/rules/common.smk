# Helpers shared by the rule files: every value comes from the stage table in imgclf.stages.
import re

ARCHIVE_OF = {filename: archive for archive, filename in stages.ARCHIVES.items()}


wildcard_constraints:
    filename="|".join(map(re.escape, ARCHIVE_OF)),
    dataset="|".join(stages.DATASET_ARCHIVE),
    experiment="|".join(EXPERIMENTS),


def stage(name):
    return STAGES[name]


def stage_params(name):
    """The values of the params a stage reads: a change in them reruns the stage."""
    values = {}
    for key in stage(name).params:
        node = PARAMS
        for part in key.split("."):
            node = node[part]
        values[key] = node
    return values


def command(name):
    """The stage's command, as in dvc.yaml; rules whose stage takes ``--threads`` append their own count."""
    return stage(name).cmd
