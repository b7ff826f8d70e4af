"""End to end: a user's own source (params: data.sources.mydata), a generated zip in the Tiny
ImageNet layout served over HTTP on 127.0.0.1, goes through the data stages with Snakemake and with
DVC (identical bytes, and each engine reruns only what changed), and trains seed_cnn in both."""

import shutil
from pathlib import Path

import pytest
import yaml

from conftest import dvc_stages_to_run, edit_params, file_hashes, load_params, make_project, run, snakemake_jobs
from imgclf import download

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def projects(module_tmp, http_server, small_tiny_zip):
    served, base = http_server
    shutil.copy(small_tiny_zip, served / "mydata.zip")
    params = load_params()
    # what a user writes: a source of their own, and the data set pointed at it; no code touched
    params["data"].setdefault("sources", {})["mydata"] = {
        "url": f"{base}/mydata.zip",
        "md5": download.md5sum(small_tiny_zip),
        "size": small_tiny_zip.stat().st_size,
        "layout": "tiny_imagenet_zip",
    }
    params["data"]["imagenet200"].update(source="mydata", n_classes=10)
    params["experiments"] = ["seed_cnn"]
    params["seed_cnn"].update(epochs=2, seeds=[0], train_eval_images=100)
    smk = make_project(module_tmp / "smk", params)
    dvc = make_project(module_tmp / "dvc", params)
    run(["snakemake", "--cores", "2", "data/prepared/imagenet200"], smk)
    run(["dvc", "repro", "prepare@imagenet200"], dvc)
    return smk, dvc


@pytest.fixture(scope="module")
def trained(projects):
    """The projects after the whole pipeline, in each engine."""
    smk, dvc = projects
    run(["snakemake", "--cores", "2"], smk)
    run(["dvc", "repro"], dvc)
    return projects


@pytest.fixture
def copies(projects, tmp_path):
    """Copies of the projects as the module fixture left them (git, DVC cache, Snakemake's records
    and all), for a test that changes its project."""
    return tuple(Path(shutil.copytree(project, tmp_path / project.name, symlinks=True)) for project in projects)


def test_both_engines_write_identical_arrays(projects):
    smk, dvc = projects
    expected = file_hashes(smk, "data/prepared/imagenet200", "data/raw")
    assert any(name.endswith("train.npz") for name in expected)
    assert file_hashes(dvc, "data/prepared/imagenet200", "data/raw") == expected


def test_user_source_trains_seed_cnn_in_both_engines(trained):
    """Download (over HTTP), prepare, train, evaluate and report from the user's source, in each
    engine: the same numbers, the report labels the row with its data, and the embedded sample,
    which no data set uses, is never generated."""
    projects = smk, dvc = trained
    metrics = [yaml.safe_load((project / "reports/metrics/seed_cnn/seed0.json").read_text()) for project in projects]
    assert metrics[0]["test_images"] > 40 and metrics[0]["epochs"] == 2
    # the same run in either engine: every figure, the weights (the saved model, byte for byte),
    # the evaluation details, the per-epoch logs and the results table
    outputs = [file_hashes(project, "models", "reports/metrics", "reports/eval", "reports/live") for project in projects]
    assert {"models/seed_cnn/seed0/model.keras", "reports/metrics/seed_cnn/seed0.json"} <= set(outputs[0])
    assert outputs[0] == outputs[1]
    assert (smk / "reports/results.md").read_text() == (dvc / "reports/results.md").read_text()
    for project in projects:
        assert "| seed_cnn | imagenet200 (mydata) |" in (project / "reports/results.md").read_text()
        assert not (project / "data/sample").exists()


def test_a_corrupt_metrics_file_is_rebuilt_by_the_command_its_message_names(trained):
    """A truncated metrics file: the report fails in one line naming the file, the JSON error's
    place and the rebuild; that command alone gives back the complete table and the same numbers."""
    smk, dvc = trained
    metrics = "reports/metrics/seed_cnn/seed0.json"
    for project, engine in ((smk, "snakemake"), (dvc, "dvc")):
        good = (project / metrics).read_text()
        (project / metrics).write_text(good[: len(good) // 2])
        if engine == "snakemake":  # the newer metrics file reruns the report, which fails
            failed = run(["snakemake", "--cores", "2"], project, check=False)
            line = (project / "logs/report/report.log").read_text().strip()
        else:  # the report stage's command
            failed = run(yaml.safe_load((project / "dvc.yaml").read_text())["stages"]["report"]["cmd"].split(),
                         project, check=False)
            line = failed.stderr.strip()
        assert failed.returncode != 0 and "\n" not in line, line
        assert line.startswith(f"error: {metrics}: not valid JSON at line ") and "; rebuild it: " in line
        rebuild = f"snakemake --cores 1 --forcerun {metrics}" if engine == "snakemake" else "dvc repro"
        assert f"`{rebuild}`" in line
        run(rebuild.split(), project)
        results = [{k: v for k, v in yaml.safe_load(text).items() if "second" not in k} for text in ((project / metrics).read_text(), good)]
        assert results[0] == results[1]  # the same figures (timings aside)
        assert "| seed_cnn | imagenet200 (mydata) |" in (project / "reports/results.md").read_text()


def test_second_run_does_nothing(projects):
    smk, dvc = projects
    assert snakemake_jobs(smk, "data/prepared/imagenet200") == {}
    result = run(["dvc", "repro", "prepare@imagenet200"], dvc).stdout
    assert "Running stage" not in result
    assert "didn't change, skipping" in result


def test_image_size_reruns_prepare_not_download(copies):
    smk, dvc = copies
    for project in copies:
        edit_params(project / "params.yaml", {"data.image_size": 16})
    assert snakemake_jobs(smk, "data/prepared/imagenet200") == {"prepare": 1}
    # DVC: first its check of params.yaml, which writes each stage's params values (its file under
    # config/resolved); then, of the stages upstream of the prepared arrays, prepare alone
    assert dvc_stages_to_run(dvc, "prepare@imagenet200") == {"check_params"}
    run(["dvc", "repro", "check_params"], dvc)
    assert dvc_stages_to_run(dvc, "prepare@imagenet200") == {"prepare@imagenet200"}
    run(["snakemake", "--cores", "2", "data/prepared/imagenet200"], smk)
    run(["dvc", "repro", "prepare@imagenet200"], dvc)
    assert file_hashes(smk, "data/prepared/imagenet200") == file_hashes(dvc, "data/prepared/imagenet200")
    meta = yaml.safe_load((dvc / "data/prepared/imagenet200/meta.json").read_text())
    assert meta["image_size"] == 16 and meta["n_classes"] == 10


def test_wrong_checksum_fails_the_download_stage_cleanly(copies):
    _, dvc = copies
    edit_params(dvc / "params.yaml", {"data.sources.mydata.md5": "f" * 32})
    result = run(["dvc", "repro", "download@imagenet200"], dvc, check=False)
    assert result.returncode != 0
    assert "MD5 mismatch" in result.stdout + result.stderr
    assert not (dvc / "data/raw/imagenet200.zip").exists()
