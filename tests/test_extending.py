"""The README's "Adding a model or an experiment" and "a data set" steps, followed in a copy of the
project: after exactly the files the README names, both engines plan the new stages with the
same commands, the generated files are current and dvc.yaml needs no edit."""

import os

import pytest
import yaml

from conftest import make_project, run

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


def _dvc_commands(project, env) -> dict:
    out = run(["python", "-c", "from dvc.repo import Repo\nwith Repo('.') as r:\n"
               "    [print(s.addressing, '|', s.cmd) for s in r.index.stages]"], project, env=env).stdout
    return dict(line.split(" | ", 1) for line in out.splitlines() if " | " in line)


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
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["imgclf", "schema"], project, env=env)  # step 3
    run(["imgclf", "runs"], project, env=env)
    commands = _dvc_commands(project, env)
    assert "train@tinynet_exp-s0" in commands and "evaluate@tinynet_exp-s0" in commands
    dry = run(["snakemake", "-n", "-p", "--forceall", "--cores", "1"], project, env=env).stdout
    assert commands["train@tinynet_exp-s0"] in dry
    assert dry.count("Shell command: imgclf train ") == sum(1 for name in commands if name.startswith("train"))
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
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["imgclf", "schema"], project, env=env)
    run(["imgclf", "runs"], project, env=env)
    commands = _dvc_commands(project, env)
    assert {"download_sample@cifar10b", "prepare@cifar10b", "train@cifar_b-s0"} <= set(commands)
    dry = run(["snakemake", "-n", "-p", "--forceall", "--cores", "1"], project, env=env).stdout
    for name in ("download_sample@cifar10b", "prepare@cifar10b", "train@cifar_b-s0", "evaluate@cifar_b-s0"):
        assert commands[name] in dry, name
