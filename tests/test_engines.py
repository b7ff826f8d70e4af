"""End to end: a generated Tiny ImageNet zip served over HTTP on 127.0.0.1 goes through the data
stages with Snakemake and with DVC; identical bytes, and each engine reruns only what changed."""

import shutil

import pytest
import yaml

from conftest import dvc_stages_to_run, file_hashes, load_params, make_project, run, snakemake_jobs
from imgclf import download

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def projects(tmp_path_factory, http_server, small_tiny_zip):
    served, base = http_server
    shutil.copy(small_tiny_zip, served / "tiny-imagenet-200.zip")
    params = load_params()
    params["data"]["source"] = "official"
    params["data"]["sources"]["official"]["tiny_imagenet"] = {
        "url": f"{base}/tiny-imagenet-200.zip",
        "md5": download.md5sum(small_tiny_zip),
        "size": small_tiny_zip.stat().st_size,
    }
    params["data"]["imagenet200"]["n_classes"] = 10
    smk = make_project(tmp_path_factory.mktemp("smk"), params)
    dvc = make_project(tmp_path_factory.mktemp("dvc"), params)
    run(["snakemake", "--cores", "2", "data/prepared/imagenet200"], smk)
    run(["dvc", "repro", "prepare_imagenet200"], dvc)
    return smk, dvc


def set_param(project, section, key, value):
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params[section][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def test_both_engines_write_identical_arrays(projects):
    smk, dvc = projects
    expected = file_hashes(smk, "data/prepared/imagenet200", "data/raw")
    assert any(name.endswith("train.npz") for name in expected)
    assert file_hashes(dvc, "data/prepared/imagenet200", "data/raw") == expected


def test_second_run_does_nothing(projects):
    smk, dvc = projects
    assert snakemake_jobs(smk, "data/prepared/imagenet200") == {}
    result = run(["dvc", "repro", "prepare_imagenet200"], dvc).stdout
    assert "Running stage" not in result
    assert "didn't change, skipping" in result


def test_image_size_reruns_prepare_not_download(projects):
    smk, dvc = projects
    for project in projects:
        set_param(project, "data", "image_size", 16)
    assert snakemake_jobs(smk, "data/prepared/imagenet200") == {"prepare": 1}
    # and DVC's check of params.yaml, upstream of every stage (its stamp never changes)
    assert dvc_stages_to_run(dvc, "prepare_imagenet200") == {"check_params", "prepare_imagenet200"}
    run(["snakemake", "--cores", "2", "data/prepared/imagenet200"], smk)
    run(["dvc", "repro", "prepare_imagenet200"], dvc)
    assert file_hashes(smk, "data/prepared/imagenet200") == file_hashes(dvc, "data/prepared/imagenet200")
    meta = yaml.safe_load((dvc / "data/prepared/imagenet200/meta.json").read_text())
    assert meta["image_size"] == 16 and meta["n_classes"] == 10


def test_wrong_checksum_fails_the_download_stage_cleanly(projects):
    _, dvc = projects
    params = yaml.safe_load((dvc / "params.yaml").read_text())
    params["data"]["sources"]["official"]["tiny_imagenet"]["md5"] = "f" * 32
    (dvc / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run(["dvc", "repro", "download_tiny_imagenet"], dvc, check=False)
    assert result.returncode != 0
    assert "MD5 mismatch" in result.stdout + result.stderr
    assert not (dvc / "data/raw/tiny-imagenet-200.zip").exists()
