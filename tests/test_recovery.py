"""Kills and deletions: after a SIGKILL of any kind of job (the engine dies with it), or after any
kind of output is deleted, a rerun in either engine rebuilds what is missing, both engines then
have nothing to do, and every output equals an undisturbed run's.

The project is the whole pipeline for one experiment (``experiments: [seed_cnn]``, CI's sizes):
sample -> download -> prepare -> train -> evaluate -> report. Each case works on a copy of the
finished undisturbed run."""

import csv
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import zipfile
from pathlib import Path

import pytest

from conftest import dvc_stages_to_run, load_params, make_project, run, snakemake_jobs

pytestmark = pytest.mark.slow
TRACKED = ("data/sample", "data/raw", "data/prepared", "models", "reports")
TIMING_COLUMNS = {"seconds", "train_seconds", "train_images_per_second", "train s", "img/s"}


def _without_timings(rows: list[list[str]]) -> list[list[str]]:
    keep = [i for i, name in enumerate(rows[0]) if name.strip() not in TIMING_COLUMNS]
    return [[row[i] for i in keep] for row in rows]


def _digest(path: Path) -> str:
    """A file's content with wall-clock figures left out: the same run on the same machine gives
    the same digest (weights compared value by value, not as HDF5 bytes)."""
    if path.suffix == ".keras":
        import h5py

        with zipfile.ZipFile(path) as archive:
            # Keras writes Python object ids into the config (shared_object_id): not part of the model
            parts = [re.sub(rb'"shared_object_id": \d+', b"", archive.read("config.json"))]
            with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
                weights.visititems(lambda name, item: parts.extend(
                    [name.encode(), item[()].tobytes()]) if isinstance(item, h5py.Dataset) else None)
        data = b"".join(parts)
    elif path.suffix == ".json":
        content = json.loads(path.read_text())
        data = json.dumps({k: v for k, v in content.items() if "second" not in k}, sort_keys=True).encode()
    elif path.suffix == ".csv" and path.name in ("history.csv", "results.csv"):
        data = repr(_without_timings(list(csv.reader(io.StringIO(path.read_text()))))).encode()
    elif path.name == "results.md":
        lines = path.read_text().splitlines()
        table = [line.strip("|").split("|") for line in lines if line.startswith("|")]
        data = repr([lines[0], _without_timings(table)]).encode()
    else:
        data = path.read_bytes()
    return hashlib.md5(data).hexdigest()


def outputs(project: Path) -> dict:
    found = {}
    for top in TRACKED:
        for path in sorted((project / top).rglob("*")):
            if path.is_file() and path.name not in (".snakemake_timestamp", ".gitkeep"):
                found[str(path.relative_to(project))] = _digest(path)
    return found


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The undisturbed run, recorded in dvc.lock and committed; and the digest of its outputs."""
    params = load_params("config/ci.yaml")
    params["experiments"] = ["seed_cnn"]
    params["seed_cnn"]["seeds"] = [0]
    project = make_project(tmp_path_factory.mktemp("finished") / "project", params)
    run(["snakemake", "--cores", "2"], project, timeout=900)
    assert both_idle(project)
    digest = outputs(project)
    assert any(name.endswith("model.keras") for name in digest) and "reports/results.md" in digest
    return project, digest


@pytest.fixture
def project(finished, tmp_path):
    source, _ = finished
    copy = tmp_path / "project"
    shutil.copytree(source, copy, symlinks=True)
    return copy


def both_idle(project: Path) -> bool:
    return snakemake_jobs(project) == {} and dvc_stages_to_run(project) == set() and \
        run(["dvc", "status", "--quiet"], project, check=False).returncode == 0


def rerun(project: Path, engine: str) -> None:
    """What a user does after a crash: Snakemake needs its lock removed; after DVC, `make sync`
    tells Snakemake that DVC's outputs are up to date."""
    if engine == "snakemake":
        run(["snakemake", "--unlock"], project)
        run(["snakemake", "--cores", "2"], project, timeout=900)
    else:
        run(["dvc", "repro"], project, timeout=900)
        run(["make", "-s", "sync", "STAMP="], project, timeout=300)


def leftovers(project: Path) -> list[str]:
    """Hidden temporaries of outputs (``.<name>.<pid>.<random>``) still on disk."""
    return sorted(str(p.relative_to(project)) for top in TRACKED for p in (project / top).rglob(".*")
                  if p.name not in (".snakemake_timestamp", ".gitkeep"))


# the output each kind of job writes last (or only), as the stage names it on its command line
KILL_POINTS = {
    "prepare": ("prepare", "data/prepared/imagenet200"),
    "train": ("train", "models/seed_cnn/seed0"),
    "evaluate": ("evaluate", "reports/metrics/seed_cnn/seed0.json"),
    "report": ("report", "reports/results.md"),
}
DVC_STAGE = {"prepare": "prepare_imagenet200", "train": "train_seed_cnn_s0", "evaluate": "evaluate_seed_cnn_s0",
             "report": "report"}


@pytest.mark.parametrize("engine", ["snakemake", "dvc"])
@pytest.mark.parametrize("kind", list(KILL_POINTS))
def test_a_killed_job_is_redone_and_both_engines_agree(finished, project, kind, engine):
    """The job is forced to run again and, with its output complete in a temporary but not yet in
    place, SIGKILLs its whole process group: the engine dies with it. Then the same engine runs
    again; both engines have nothing left to do, and every output equals the undisturbed run's."""
    _, expected = finished
    rule, output = KILL_POINTS[kind]
    command = (["snakemake", "--cores", "2", "--forcerun", rule] if engine == "snakemake"
               else ["dvc", "repro", "--force", "--single-item", DVC_STAGE[kind]])
    env = {**os.environ, "IMGCLF_KILL_AT": f"replace {output}", "IMGCLF_KILL_GROUP": "1"}
    killed = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=900,
                            start_new_session=True)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stdout[-2000:], killed.stderr[-2000:])
    assert leftovers(project), "the kill left no temporary: it did not hit the output being written"
    rerun(project, engine)
    assert both_idle(project)
    assert outputs(project) == expected
    assert leftovers(project) == []


DELETIONS = {
    "sample archive": "data/sample/tiny-imagenet-200.zip",
    "downloaded archive": "data/raw/tiny-imagenet-200.zip",
    "prepared data": "data/prepared/imagenet200",
    "model": "models/seed_cnn/seed0",
    "metrics": "reports/metrics/seed_cnn/seed0.json",
    "evaluation details": "reports/eval/seed_cnn/seed0",
    "results table": "reports/results.md",
    "figures": "reports/figures",
}


@pytest.mark.parametrize("engine", ["snakemake", "dvc"])
@pytest.mark.parametrize("kind", list(DELETIONS))
def test_a_deleted_output_is_rebuilt_and_both_engines_agree(finished, project, kind, engine):
    _, expected = finished
    path = project / DELETIONS[kind]
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert not both_idle(project), "neither engine noticed the deletion"
    rerun(project, engine)
    assert both_idle(project)
    assert outputs(project) == expected
