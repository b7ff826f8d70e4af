"""Where every stage reads and writes: one function per kind of path, used by the stage table,
the Snakemake rules, the report and the tests (dvc.yaml spells the same patterns out)."""

import os

PARAMS_FILE = "params.yaml"
PACKAGE = "src/imgclf"
RESOLVED_DIR = "config/resolved"  # check_params' output: each stage's params, defaults filled in
RUNS_FILE = "config/runs.yaml"  # dvc.yaml's vars: the stages of each family that params.yaml asks for
REPORT_OUTS = ["reports/results.md", "reports/results.csv", "reports/figures"]
RAW_DIR = "data/raw"
PART_MAX_AGE_S = 7 * 24 * 3600  # `imgclf tidy` removes a partial download this old, even of a selected source


def partial_download(dest: str, md5: str) -> str:
    """Where an interrupted download of the file with checksum ``md5`` keeps what it has (hidden,
    next to the output), for the next attempt or run to resume from. Named by the checksum, so a
    switched source never resumes from another file's bytes."""
    head, name = os.path.split(dest)
    return os.path.join(head, f".{name}.{md5}.part")


def raw_archive(dataset: str, suffix: str) -> str:
    """Where the download stage puts ``dataset``'s archive (``suffix``: its layout's, ``.zip``)."""
    return f"{RAW_DIR}/{dataset}{suffix}"


def listing_file(dataset: str) -> str:
    """Snakemake's record of the folder a data set is read from in place (``stages.write_listings``)."""
    return f".snakemake/listings/{dataset}"


def prepared(dataset: str) -> str:
    return f"data/prepared/{dataset}"


def model_dir(name: str, seed: int) -> str:
    return f"models/{name}/seed{seed}"


def live_dir(name: str, seed: int) -> str:
    """The run's DVCLive directory (in git: ``dvc exp show``, ``dvc plots`` read it, in any clone)."""
    return f"reports/live/{name}/seed{seed}"


def tensorboard_dir(name: str, seed: int) -> str:
    """The run's TensorBoard events (``tensorboard --logdir logs/tensorboard``); not a stage output."""
    return f"logs/tensorboard/{name}/seed{seed}"


def timings_file(name: str, seed: int, stage: str) -> str:
    """How long a run's ``stage`` (train, evaluate) took: a log, tracked by neither git nor DVC, so
    that a rerun that gives the same results leaves every tracked file as it was."""
    return f"logs/timings/{name}/seed{seed}.{stage}.json"


def metrics_file(name: str, seed: int) -> str:
    return f"reports/metrics/{name}/seed{seed}.json"


def eval_dir(name: str, seed: int) -> str:
    return f"reports/eval/{name}/seed{seed}"


def confusion_file(name: str, seed: int) -> str:
    """The run's confusion pairs (actual, predicted) for ``dvc plots``: beside its details
    directory, since DVC refuses a plot inside another output."""
    return f"reports/eval/{name}/seed{seed}.confusion.csv"


def resolved_file(kind: str, name: str) -> str:
    """The params one stage reads, as check_params writes them: ``config/resolved/<kind>/<name>.json``."""
    return f"{RESOLVED_DIR}/{kind}/{name}.json"


def run_key(name: str, seed: int) -> str:
    """A run's key in dvc.yaml's foreach: its stages are ``train@<key>``, ``evaluate@<key>``."""
    return f"{name}-s{seed}"
