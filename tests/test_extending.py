"""The README's "Adding a model or an experiment" and "a data set" steps, followed in a copy of the
project: after exactly the files the README names, both engines plan the new stages with the
same commands, the generated files are current and dvc.yaml needs no edit."""

import os
import re
from pathlib import Path

import pytest
import yaml

from conftest import dvc_commands, make_project, run, snakemake_commands, write_params

pytestmark = pytest.mark.slow

MODEL = '''
from imgclf.models import register_model
from imgclf.models.layers import softmax_head, unit_scale


@register_model
def tinynet(input_shape, num_classes, **options):
    import keras

    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, activation="relu")(unit_scale(inputs))
    return keras.Model(inputs, softmax_head(keras.layers.GlobalAveragePooling2D()(x), num_classes))
'''


def _env(project):
    """The copy's package, not the installed one (the README's steps edit the copy's sources)."""
    return {**os.environ, "PYTHONPATH": str(project / "src")}


def _append(path, text):
    path.write_text(path.read_text() + text)


ROOT = Path(__file__).resolve().parents[1]
# what the README's two commands write (`imgclf schema && imgclf runs`) and check-params' output
GENERATED = ("workflow/schemas/params.schema.json", "config/runs.yaml", "config/resolved/")


def _touched(project) -> set[str]:
    """The files a step changed or added in the copy (a git work tree), generated files aside."""
    lines = run(["git", "status", "--porcelain", "--untracked-files=all"], project).stdout.splitlines()
    return {line[3:] for line in lines if not line[3:].startswith(GENERATED)}


def _readme_model_files() -> set[str]:
    """The files the README's "Adding a model or an experiment" steps name, with ``<family>`` as given."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Adding a model or an experiment", 1)[1].split("\nThen ", 1)[0]
    steps = re.findall(r"^\d+\. `([^`]+)`", section, flags=re.M)
    return set(steps)


def test_add_a_model_and_an_experiment(tmp_path):
    project = make_project(tmp_path / "p")
    env = _env(project)
    (project / "src/imgclf/models/tinynet.py").write_text(MODEL)  # the README's three files
    _append(project / "src/imgclf/experiments.py",
            '\nregister(Experiment("tinynet_exp", "tinynet", "cifar10", defaults={"epochs": 1}))\n')
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["experiments"].append("tinynet_exp")
    params["tinynet_exp"] = {"threads": 1}
    write_params(project / "params.yaml", params)
    listed = _readme_model_files()
    assert len(listed) <= 3 and "src/imgclf/models/<family>.py" in listed, listed
    assert _touched(project) == {path.replace("<family>", "tinynet") for path in listed}
    run(["imgclf", "schema"], project, env=env)  # the two commands
    run(["imgclf", "runs"], project, env=env)
    assert _touched(project) == {path.replace("<family>", "tinynet") for path in listed}  # generated files only
    commands = dvc_commands(project, env)
    assert "train@tinynet_exp-s0" in commands and "evaluate@tinynet_exp-s0" in commands
    planned = snakemake_commands(project, "--forceall", env=env)
    assert any(commands["train@tinynet_exp-s0"] in command for command in planned)
    assert sum(command.startswith("imgclf train ") for command in planned) == sum(name.startswith("train") for name in commands)
    runs = yaml.safe_load((project / "config/runs.yaml").read_text())
    assert runs["train"]["tinynet_exp-s0"]["module"] == "src/imgclf/models/tinynet.py"
    run(["imgclf", "check-params", "--resolved", "config/resolved"], project, env=env)
    resolved = yaml.safe_load((project / "config/resolved/train/tinynet_exp.json").read_text())
    assert resolved["experiment"]["module"] == "tinynet" and resolved["tinynet_exp.epochs"] == 1


def test_add_a_data_set(tmp_path):
    project = make_project(tmp_path / "p")
    env = _env(project)
    _append(project / "src/imgclf/datasets.py",  # the DataSet record
            '\n_register(DATASETS, DataSet("cifar10b", ("cifar10_binary",), "sample_cifar10", COMMON_READS))\n')
    _append(project / "src/imgclf/experiments.py",  # and an experiment that trains on it
            '\nregister(Experiment("cifar_b", "cifar_cnn", "cifar10b", defaults={"epochs": 1}))\n')
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["experiments"].append("cifar_b")
    write_params(project / "params.yaml", params)
    run(["imgclf", "schema"], project, env=env)
    run(["imgclf", "runs"], project, env=env)
    assert _touched(project) == {"src/imgclf/datasets.py", "src/imgclf/experiments.py", "params.yaml"}
    commands = dvc_commands(project, env)
    assert {"download_sample@cifar10b", "prepare@cifar10b", "train@cifar_b-s0"} <= set(commands)
    planned = snakemake_commands(project, "--forceall", env=env)
    for name in ("download_sample@cifar10b", "prepare@cifar10b", "train@cifar_b-s0", "evaluate@cifar_b-s0"):
        assert any(commands[name] in command for command in planned), name
