"""The README's "Adding a model or an experiment" and "a data set" steps, followed in a copy of the
project: after exactly the files the README names, both engines plan the new stages with the
same commands, the generated files are current and dvc.yaml needs no edit."""

import os

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


def test_add_a_model_and_an_experiment(tmp_path):
    project = make_project(tmp_path / "p")
    env = _env(project)
    (project / "src/imgclf/models/tinynet.py").write_text(MODEL)  # step 1
    _append(project / "src/imgclf/experiments.py",  # step 2
            '\nregister(Experiment("tinynet_exp", "tinynet", "cifar10", defaults={"epochs": 1}))\n')
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["experiments"].append("tinynet_exp")
    params["tinynet_exp"] = {"threads": 1}
    write_params(project / "params.yaml", params)
    run(["imgclf", "schema"], project, env=env)  # step 3
    run(["imgclf", "runs"], project, env=env)
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
    commands = dvc_commands(project, env)
    assert {"download_sample@cifar10b", "prepare@cifar10b", "train@cifar_b-s0"} <= set(commands)
    planned = snakemake_commands(project, "--forceall", env=env)
    for name in ("download_sample@cifar10b", "prepare@cifar10b", "train@cifar_b-s0", "evaluate@cifar_b-s0"):
        assert any(commands[name] in command for command in planned), name
