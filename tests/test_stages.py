"""The stage table and the files generated from it, in process (the CLI checks of the same files are
in test_params.py): dvc.yaml and the params schema are exactly what the code generates, a stale
dvc.yaml is named, and the per-run paths are what the report and the plots read."""

import json
import subprocess

import pytest

from conftest import ROOT, load_params
from imgclf import config, stages
from imgclf.errors import PipelineError


def test_committed_dvc_yaml_is_the_stage_table():
    params = config.load(ROOT / "params.yaml")
    assert stages.dvc_yaml_text(params) == (ROOT / "dvc.yaml").read_text()


def test_committed_schema_is_the_schema_the_code_validates_with():
    assert config.schema_json() == (ROOT / "workflow/schemas/params.schema.json").read_text()
    schema = json.loads(config.schema_json())
    assert schema["additionalProperties"] is False and "required" not in schema  # params.yaml may leave anything out


def test_an_outdated_dvc_yaml_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # params.yaml is resolved from the working directory, as the engines do
    params = config.load(ROOT / "params.yaml")
    path = tmp_path / "dvc.yaml"
    path.write_text(stages.dvc_yaml_text(params))
    stages.check_dvc_yaml(params, "params.yaml", str(path))  # in sync: nothing to say
    params["alexnet32"]["seeds"] = [0, 9]
    with pytest.raises(PipelineError, match=r"dvc.yaml: out of date with params.yaml .*run `imgclf dvc-yaml`"):
        stages.check_dvc_yaml(params, "params.yaml", str(path))
    # another params file (--configfile): dvc.yaml follows params.yaml only, so nothing is checked
    stages.check_dvc_yaml(params, "config/full.yaml", str(path))
    stages.check_dvc_yaml(params, "params.yaml", str(tmp_path / "missing.yaml"))  # no DVC here: nothing to check


def test_run_paths_and_plots():
    params = load_params("config/ci.yaml")
    spec = stages.dvc_yaml(config.validate(params))
    train, evaluate = spec["stages"]["train_seed_cnn_s1"], spec["stages"]["evaluate_seed_cnn_s1"]
    assert train["outs"] == ["models/seed_cnn/seed1", {"reports/live/seed_cnn/seed1": {"cache": False}}]
    assert "--live reports/live/seed_cnn/seed1 --tensorboard logs/tensorboard/seed_cnn/seed1" in train["cmd"]
    assert evaluate["metrics"] == [{"reports/metrics/seed_cnn/seed1.json": {"cache": False}}]
    assert evaluate["outs"] == [{"reports/eval/seed_cnn/seed1": {"cache": False}}]
    assert "reports/live/seed_cnn/seed1/metrics.json" in spec["metrics"]
    plots = {key: value for entry in spec["plots"] for key, value in entry.items()}
    assert plots["seed_cnn_s1_accuracy"]["y"] == {
        "reports/live/seed_cnn/seed1/plots/metrics/accuracy.tsv": "accuracy",
        "reports/live/seed_cnn/seed1/plots/metrics/val_accuracy.tsv": "val_accuracy"}
    assert plots["reports/eval/seed_cnn/seed1/confusion.csv"]["template"] == "confusion"


def test_metrics_and_plots_are_git_files_not_cached_ones():
    """What `dvc metrics diff` and `dvc plots diff` read of another commit must be in git: every
    metrics and plots file of dvc.yaml is a cache: false output, and .gitignore does not hide it."""
    spec = stages.dvc_yaml(config.validate(load_params("config/ci.yaml")))
    git_outs = [path for entry in spec["stages"].values() for out in entry.get("outs", []) + entry.get("metrics", [])
                if isinstance(out, dict) and out[path := next(iter(out))].get("cache") is False]
    files = [*spec["metrics"], *(path for entry in spec["plots"] for key, value in entry.items()
                                 for path in (value["y"] if isinstance(value.get("y"), dict) else [key]))]
    for path in files:
        assert any(path == out or path.startswith(out + "/") for out in git_outs), path
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *files, *git_outs], cwd=ROOT, capture_output=True,
                             text=True)
    assert ignored.stdout == "", f"git ignores: {ignored.stdout}"
    kept = subprocess.run(["git", "check-ignore", "--no-index", "models/seed_cnn/seed1", "data/prepared/cifar10"],
                          cwd=ROOT, capture_output=True, text=True)
    assert len(kept.stdout.split()) == 2  # the cached outputs stay out of git


def test_dvc_cannot_take_a_stage_list_from_vars(tmp_path):
    """Why dvc.yaml is generated (its header): DVC checks the schema before it interpolates, so a
    foreach stage cannot take its dependency list (which differs per experiment) from ``vars``."""
    (tmp_path / "runs.yaml").write_text("runs:\n  a: {deps: [x, y]}\n  b: {deps: [x]}\n")
    (tmp_path / "dvc.yaml").write_text("vars:\n  - runs.yaml\nstages:\n  train:\n    foreach: ${runs}\n    do:\n"
                                       "      cmd: echo ${key}\n      deps: ${item.deps}\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=tmp_path, check=True)
    result = subprocess.run(["dvc", "stage", "list"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0 and "expected a list" in result.stdout + result.stderr
    assert "DVC checks dvc.yaml's schema before it interpolates" in stages.DVC_YAML_HEADER


def test_each_data_set_reads_the_source_it_names():
    """A data set's download stage fetches its own source's archive and lists exactly that
    source's params; the embedded sample is generated only where it is the source."""
    params = config.load(ROOT / "params.yaml")
    table = stages.by_name(params)
    assert table["download_imagenet200"].params == ["data.imagenet200.source", "data.sources.sample_tiny_imagenet"]
    assert table["download_imagenet200"].data == ["data/sample/tiny-imagenet-200.zip"]
    assert {"sample_tiny_imagenet", "sample_cifar10"} <= set(table)
    params["data"]["imagenet200"]["source"] = "tiny_imagenet"  # the official archive
    table = stages.by_name(params)
    assert table["download_imagenet200"].params == ["data.imagenet200.source", "data.sources.tiny_imagenet"]
    assert table["download_imagenet200"].data == [] and "sample_tiny_imagenet" not in table
    assert table["download_imagenet200"].outs == ["data/raw/imagenet200.zip"]
    assert table["download_cifar10"].outs == ["data/raw/cifar10.tar.gz"] and "sample_cifar10" in table
    assert "data.imagenet200.source" in table["report"].params


def test_upstream_runs():
    table = stages.by_name(config.validate(load_params("config/ci.yaml")))
    assert table["train_cifar_densenet201_transfer_s0"].deps[-1] == "models/densenet201/seed0"
    assert "--upstream models/densenet201/seed0 " in table["train_cifar_densenet201_transfer_s0"].cmd


def test_upstream_run_of_the_same_seed_and_the_params_file():
    """A transfer run starts from the DenseNet-201 run of its own seed where there is one, else from
    its first; every command reads the params file it was built for."""
    params = config.validate(load_params("config/ci.yaml"))
    params["densenet201"]["seeds"] = [0, 1]
    params["cifar_densenet201_transfer"]["seeds"] = [1, 2]
    table = stages.by_name(params, "other.yaml")
    assert table["train_cifar_densenet201_transfer_s1"].deps[-1] == "models/densenet201/seed1"
    assert "--upstream models/densenet201/seed1 " in table["train_cifar_densenet201_transfer_s1"].cmd
    assert table["train_cifar_densenet201_transfer_s2"].deps[-1] == "models/densenet201/seed0"
    assert all(stage.cmd.endswith("--params other.yaml") for name, stage in table.items() if not name.startswith("sample_"))


def test_folder_source_replaces_the_tiny_imagenet_archive(tmp_path):
    params = config.validate(load_params("config/ci.yaml"))
    params["data"]["sources"]["imagenet"] = {"path": str(tmp_path / "imagenet"), "layout": "folder"}
    params["data"]["imagenet200"]["source"] = "imagenet"
    table = stages.by_name(params)
    prepare = table["prepare_imagenet200"]
    assert prepare.deps[0] == str(tmp_path / "imagenet") and f"--source {tmp_path / 'imagenet'} " in prepare.cmd
    assert "download_imagenet200" not in table and "sample_tiny_imagenet" not in table  # read in place
    assert table["prepare_cifar10"].deps[0] == "data/raw/cifar10.tar.gz"  # CIFAR-10 keeps its archive


def test_each_model_is_defined_in_its_experiments_model_source():
    """Training imports only the experiment's model family module: that module must register the
    model (a function of that name decorated with @register_model)."""
    import ast

    from imgclf import experiments

    for experiment in experiments.EXPERIMENTS.values():
        if experiment.kind != "keras":
            continue
        tree = ast.parse((ROOT / "src/imgclf/models" / experiment.model_source).read_text())
        registered = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
                      and any(getattr(d, "id", None) == "register_model" for d in node.decorator_list)}
        assert experiment.model in registered, (experiment.name, registered)


def _job_commands(out: str) -> set[str]:
    """The command lines of ``snakemake --dry-run --printshellcmds``, without what Snakemake adds
    (``--threads N`` and the log redirection)."""
    import re

    commands = set()
    for line in out.splitlines():
        if line.startswith("Shell command: ") and line != "Shell command: None":  # None: rule all
            command = line.removeprefix("Shell command: ").split(" > ")[0]
            commands.add(re.sub(r" --threads \d+$", "", command))
    return commands


@pytest.mark.parametrize("override", [None, "seed_cnn={epochs: 3}"], ids=["params.yaml", "--config"])
def test_every_rule_runs_the_command_dvc_runs(tmp_path, override):
    """The rules spell out their commands from named inputs, outputs and params (not a command
    string from the stage table); every job's command line is the one dvc.yaml (or, with
    ``--config``, ``dvc exp run -S``) runs for the same stage."""
    from conftest import make_project, run

    project = make_project(tmp_path / "p")
    extra = ["--config", override] if override else []
    out = run(["snakemake", "--dry-run", "--printshellcmds", "--forceall", "--cores", "2", *extra], project).stdout
    params = config.load(ROOT / "params.yaml")
    overrides = {"seed_cnn.epochs": 3} if override else {}
    table = stages.stage_list(config.apply_overrides(params, overrides, "x") if override else params, "params.yaml",
                              overrides)
    assert _job_commands(out) == {stage.cmd for stage in table}
    assert any(" --upstream models/densenet201/seed0 " in stage.cmd for stage in table)
    if override:
        assert sum("--set seed_cnn.epochs=3" in command for command in _job_commands(out)) == len(params["seed_cnn"]["seeds"])
