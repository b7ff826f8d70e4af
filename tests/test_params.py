import copy

import pytest
import yaml

from conftest import ROOT, run
from imgclf import config, stages
from imgclf.errors import PipelineError


@pytest.fixture
def params():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_params_files_are_valid():
    for name in ("params.yaml", "config/full.yaml", "config/ci.yaml"):
        config.load(ROOT / name)


def test_every_knob_is_written_in_params_yaml(params):
    """params.yaml spells out every key, so DVC can track each one."""
    assert config.validate(params) == _with_defaults_only_where_given(params)


def _with_defaults_only_where_given(params):
    return config.validate(copy.deepcopy(params))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p["data"].update(image_size=4), "data.image_size: 4 is less than the minimum of 8"),
        (lambda p: p["data"].update(resize_filter="cubic"), "data.resize_filter: 'cubic' is not one of"),
        (lambda p: p["data"].update(colour=1), "data: unknown key 'colour'"),
        (lambda p: p["seed_cnn"].update(epochs=0), "seed_cnn.epochs: 0 is less than the minimum of 1"),
        (lambda p: p["seed_cnn"].update(epoch=3), "seed_cnn: unknown key 'epoch'"),
        (lambda p: p.update(resnet={}), "(top level): unknown key 'resnet'"),
        (lambda p: p["data"]["sources"]["official"]["cifar10"].update(md5="xyz"), "data.sources.official.cifar10.md5"),
        (lambda p: p["data"]["imagenet200"].update(class_selection="list", wnids=["a"]), "data.imagenet200.wnids"),
    ],
)
def test_bad_params_name_the_key(params, edit, message):
    edit(params)
    with pytest.raises(PipelineError) as error:
        config.validate(params)
    assert message in str(error.value)


def test_cli_rejects_bad_params_in_one_line(tmp_path, params):
    params["alexnet32"]["learning_rate"] = -1
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(params))
    result = run(["imgclf", "check-params", "--params", str(bad)], tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "alexnet32.learning_rate" in result.stderr


def test_snakemake_rejects_bad_params_before_any_job(tmp_path, params):
    params["data"]["n_classes_typo"] = 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(params))
    result = run(["snakemake", "--cores", "1", "--dry-run", "--configfile", str(bad)], ROOT, check=False)
    assert result.returncode != 0
    assert "data: unknown key 'n_classes_typo'" in result.stdout + result.stderr


def test_generated_files_are_in_sync():
    run(["imgclf", "schema", "--check"], ROOT)
    run(["imgclf", "dvc-yaml", "--check"], ROOT)


def test_dvc_and_snakemake_commands_match(params):
    """Every DVC stage command is the Snakemake rule's command (Snakemake adds --threads)."""
    table = stages.by_name(config.validate(params))
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(dvc) == set(table)
    for name, stage in table.items():
        assert dvc[name]["cmd"] == stage.cmd
        assert dvc[name]["deps"] == stage.deps


def test_a_stale_dvc_yaml_stops_both_engines(tmp_path):
    """Adding a seed changes the stage list: until dvc.yaml is regenerated, Snakemake refuses to
    start and the report command (the last stage of either engine) fails, naming the fix."""
    from conftest import make_project

    project = make_project(tmp_path / "p")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["alexnet32"]["seeds"] = [0, 7]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run(["snakemake", "-n", "--cores", "1"], project, check=False)
    assert result.returncode != 0 and "dvc.yaml: out of date with params.yaml" in result.stdout + result.stderr
    result = run(["imgclf", "report", "--metrics-dir", "m", "--models-dir", "m", "--eval-dir", "m", "--out", "r"],
                 project, check=False)
    assert result.returncode == 2 and "run `imgclf dvc-yaml`" in result.stderr and not (project / "r").exists()
    run(["imgclf", "dvc-yaml"], project)
    assert "train_alexnet32_s7" in (project / "dvc.yaml").read_text()
    run(["snakemake", "-n", "--cores", "1"], project)
