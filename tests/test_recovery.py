"""Kills and deletions: after a SIGKILL of any kind of job (the engine dies with it), or after any
kind of output is deleted, a rerun in either engine rebuilds what is missing, both engines then
have nothing to do, and every output equals an undisturbed run's.

The project is the whole pipeline for one experiment (``experiments: [seed_cnn]``, CI's sizes, 2 epochs):
sample -> download -> prepare -> train -> evaluate -> report. Each case works on a copy of the
finished undisturbed run."""

import csv
import hashlib
import io
import json
import os
import re
import shutil
import shlex
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from conftest import dvc_stages_to_run, dvc_up_to_date, edit_params, fault_env, file_hashes, load_params, make_project, run, snakemake_jobs, write_params

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
        content = {k: v for k, v in json.loads(path.read_text()).items() if "second" not in k}
        if "history" in content:  # train.json: per-epoch rows with their wall time
            content["history"] = [{k: v for k, v in row.items() if k != "seconds"} for row in content["history"]]
        data = json.dumps(content, sort_keys=True).encode()
    elif path.suffix == ".csv" and path.name == "results.csv":
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


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """The undisturbed run, recorded in dvc.lock and committed; and the digest of its outputs.
    This module's tests are spread over the pytest-xdist workers, so the first worker to need it
    builds it in the session's shared directory and the others wait for it (tests only read it)."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if "PYTEST_XDIST_WORKER" in os.environ else base  # the workers' common directory
    project, digest_file = shared / "finished" / "project", shared / "finished" / "digest.json"
    with FileLock(shared / "finished.lock"):
        if not digest_file.exists():  # written last: the project is complete
            params = load_params("config/ci.yaml")
            params["experiments"] = ["seed_cnn"]
            params["seed_cnn"].update(seeds=[0], epochs=2)  # reruns, not learning: 2 epochs of CI's 6
            shutil.rmtree(project.parent, ignore_errors=True)  # a build a failed worker left half done
            make_project(project, params)
            run(["snakemake", "--cores", "2"], project, timeout=900)
            assert both_idle(project)
            digest = outputs(project)
            assert any(name.endswith("model.keras") for name in digest) and "reports/results.md" in digest
            digest_file.write_text(json.dumps(digest))
    return project, json.loads(digest_file.read_text())


@pytest.fixture
def project(finished, tmp_path):
    source, _ = finished
    copy = tmp_path / "project"
    shutil.copytree(source, copy, symlinks=True)
    return copy


def both_idle(project: Path) -> bool:
    return snakemake_jobs(project) == {} and dvc_stages_to_run(project) == set() and \
        dvc_up_to_date(project)


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
DVC_STAGE = {"prepare": "prepare@imagenet200", "train": "train@seed_cnn-s0", "evaluate": "evaluate@seed_cnn-s0",
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
    env = fault_env(f"replace {output}", group=True)
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
    "downloaded archive": "data/raw/imagenet200.zip",
    "prepared data": "data/prepared/imagenet200",
    "model": "models/seed_cnn/seed0",
    "metrics": "reports/metrics/seed_cnn/seed0.json",
    "evaluation details": "reports/eval/seed_cnn/seed0",
    "results table": "reports/results.md",
    "figures": "reports/figures",
}


# each kind of output deleted, the rerun in one engine or the other (prepared data in both: the
# case where Snakemake once said "Nothing to be done" with the arrays gone)
DELETION_CASES = [("downloaded archive", "snakemake"), ("prepared data", "snakemake"), ("metrics", "snakemake"),
                  ("figures", "snakemake"), ("sample archive", "dvc"), ("prepared data", "dvc"), ("model", "dvc"),
                  ("evaluation details", "dvc"), ("results table", "dvc")]


@pytest.mark.parametrize(("kind", "engine"), DELETION_CASES)
def test_a_deleted_output_is_rebuilt_and_both_engines_agree(finished, project, kind, engine):
    _, expected = finished
    path = project / DELETIONS[kind]
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert not both_idle(project), "neither engine noticed the deletion"
    rerun(project, engine)
    assert both_idle(project)
    assert outputs(project) == expected


def _bad(edit):
    def apply(params):
        edit(params)
        return params
    return apply


BAD_PARAMS = {
    "unknown key": (_bad(lambda p: p["seed_cnn"].update(epoch=3)), "seed_cnn: unknown key 'epoch'"),
    "string for a number": (_bad(lambda p: p["seed_cnn"].update(learning_rate="fast")),
                            "seed_cnn.learning_rate: 'fast' is not of type 'number'"),
    "negative batch size": (_bad(lambda p: p["seed_cnn"].update(batch_size=-64)),
                            "seed_cnn.batch_size: -64 is less than the minimum of 1"),
    "zero epochs": (_bad(lambda p: p["seed_cnn"].update(epochs=0)), "seed_cnn.epochs: 0 is less than the minimum of 1"),
    "huge image size": (_bad(lambda p: p["data"].update(image_size=100000)),
                        "data.image_size: 100000 is greater than the maximum of"),
    "misspelled section": (_bad(lambda p: p.update(seed_cn=p.pop("seed_cnn"))), "(top level): unknown key 'seed_cn'"),
    "upstream left out": (_bad(lambda p: p.update(experiments=["cifar_densenet201_transfer"])),
                          "experiments: cifar_densenet201_transfer starts from densenet201's model, which is not selected"),
}


@pytest.mark.parametrize("case", list(BAD_PARAMS))
def test_bad_params_stop_dvc_repro_before_any_output_is_touched(finished, project, case):
    """`dvc repro` (its check_params stage, upstream of every stage) and Snakemake stop with the
    same one-line error naming the file and key; every output is still there, unchanged."""
    import yaml

    _, expected = finished
    edit, message = BAD_PARAMS[case]
    resolved = file_hashes(project, "config/resolved")
    assert len(resolved) == 5  # download, prepare, train, evaluate, report
    path = project / "params.yaml"
    path.write_text(yaml.safe_dump(edit(yaml.safe_load(path.read_text())), sort_keys=False))
    smk = run(["snakemake", "--cores", "2"], project, check=False)
    assert smk.returncode != 0
    # the whole pipeline, and one stage as target (check_params runs first only as its upstream)
    for target in ([], [DVC_STAGE["train"]]):
        dvc = run(["dvc", "repro", *target], project, check=False)
        assert dvc.returncode != 0
        dvc_errors = [line for line in (dvc.stdout + dvc.stderr).splitlines() if line.startswith("error: params.yaml")]
        assert len(dvc_errors) == 1 and message in dvc_errors[0], dvc.stdout[-1500:] + dvc.stderr[-1500:]
        assert dvc_errors[0].removeprefix("error: ") in smk.stdout + smk.stderr, smk.stderr[-1500:]
        assert "Running stage 'check_params'" in dvc.stdout and dvc.stdout.count("Running stage") == 1
        assert outputs(project) == expected
        assert file_hashes(project, "config/resolved") == resolved  # the last good values stay


def test_make_sync_under_clock_skew_stops_in_one_line_and_deletes_nothing(finished, project):
    """Prepared data dated a day ahead (copied from a machine whose clock runs fast): make sync
    names the file, says what to do and exits non-zero, and every output stays; after the fix it
    gives, make sync works and both engines have nothing to do."""
    _, expected = finished
    ahead = time.time() + 86400
    for path in [project / "data/prepared/imagenet200", *(project / "data/prepared/imagenet200").iterdir()]:
        os.utime(path, (ahead, ahead))
    result = run(["make", "-s", "sync", "STAMP="], project, check=False, timeout=300)
    lines = [line for line in result.stderr.splitlines() if "ahead of this machine's clock" in line]
    assert result.returncode != 0 and len(lines) == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert lines[0].startswith("error: data/prepared/imagenet200") and "(and 6 more)" in lines[0]
    assert "(find data -newermt now -exec touch -h -c {} +)" in lines[0]
    assert outputs(project) == expected
    run(["find", "data", "-newermt", "now", "-exec", "touch", "-h", "-c", "{}", "+"], project)
    run(["make", "-s", "sync", "STAMP="], project, timeout=300)
    assert both_idle(project) and outputs(project) == expected


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_sigterm_to_dvc_repro_leaves_no_trainer_behind(finished, project):
    """DVC exits at once on SIGTERM without stopping its stage: the trainer notices it has lost its
    launcher and stops within seconds, so the rerun is the only trainer; it ends with the undisturbed
    run's outputs and both engines have nothing to do. DVC runs the stage with $SHELL -c: with SHELL
    unset (as in CI), /bin/sh, dash on Debian, stays between DVC and the trainer (bash would run the
    trainer in its place: tests/test_faults.py checks the chain through both)."""
    _, expected = finished
    env = {**fault_env(), "IMGCLF_BATCH_SLEEP_S": "1"}  # a trainer still at work
    env.pop("SHELL", None)
    dvc = subprocess.Popen(["dvc", "repro", "--force", "--single-item", DVC_STAGE["train"]], cwd=project, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    lock = project / ".resume/seed_cnn/seed0.lock"  # the trainer writes its pid there (the last run's may be in it)
    last = lock.read_text() if lock.exists() else ""
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text() not in ("", last)) and time.monotonic() < deadline:
        time.sleep(0.2)
    trainer = int(lock.read_text())
    assert b"\0train\0seed_cnn\0" in Path(f"/proc/{trainer}/cmdline").read_bytes()
    time.sleep(2)
    assert not _gone(trainer)
    dvc.terminate()
    assert dvc.wait(timeout=30) != 0
    deadline = time.monotonic() + 15
    while not _gone(trainer) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _gone(trainer), "the trainer outlived dvc repro"
    rerun(project, "dvc")
    assert both_idle(project)
    assert outputs(project) == expected


def test_the_success_hook_says_why_dvc_commit_failed(project):
    (project / ".dvc" / "config").write_text("[core]\n    no_such_option = 1\n")
    result = run(["snakemake", "--cores", "2", "--forcerun", "report"], project)
    warning = [line for line in (result.stdout + result.stderr).splitlines() if "dvc commit failed" in line]
    assert len(warning) == 1 and "no_such_option" in warning[0], warning
    # and the run ends by saying where to look
    assert "results: reports/results.md (figures: reports/figures/; HTML: snakemake --report reports/report.html)" \
        in result.stdout + result.stderr
    assert "best test top-1 per data set: imagenet200 (sample_tiny_imagenet): seed_cnn " in result.stdout + result.stderr


def test_a_second_snakemake_is_refused_while_one_runs(finished, project):
    """Two Snakemake runs in one project: the second stops at Snakemake's lock and touches nothing;
    the first finishes with the undisturbed outputs."""
    import time

    _, expected = finished
    first = subprocess.Popen(["snakemake", "--cores", "2", "--forcerun", "train"], cwd=project,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        locks = project / ".snakemake" / "locks"
        deadline = time.monotonic() + 120
        while not (locks.is_dir() and any(locks.iterdir())) and time.monotonic() < deadline:
            time.sleep(0.2)
        second = run(["snakemake", "--cores", "2", "--forcerun", "report"], project, check=False)
        assert second.returncode != 0 and "cannot be locked" in second.stdout + second.stderr
        out, _ = first.communicate(timeout=600)
    finally:
        first.kill()
    assert first.returncode == 0, out[-2000:]
    assert both_idle(project)
    assert outputs(project) == expected


def test_make_report_writes_snakemakes_html_report(project):
    run(["make", "-s", "report", "STAMP="], project, timeout=300)
    page = (project / "reports" / "report.html").read_text()
    for name in ("results.md", "learning_curves.png", "accuracy.png", "confusion_seed_cnn.png"):
        assert name in page


@pytest.mark.parametrize("key", ["mem_mb", "runtime_min", "gpus"])
def test_a_cluster_resource_reruns_nothing(project, key):
    """Scheduling keys choose where a job runs, not what it computes: neither engine reruns a
    stage (DVC only re-checks params.yaml, its check_params stage, which writes the same files)."""

    from imgclf import experiments

    from imgclf import config

    assert experiments.COMMON[key].role == "scheduling"
    path = project / "params.yaml"
    edit_params(path, {f"seed_cnn.{key}": config.load(path)["seed_cnn"][key] + 7})
    assert snakemake_jobs(project) == {}
    assert dvc_stages_to_run(project) == {"check_params"}
    result = run(["dvc", "repro"], project).stdout
    assert result.count("Running stage") == 1 and "Running stage 'check_params'" in result
    assert dvc_up_to_date(project)


@pytest.mark.parametrize("batch_size", [64, 32], ids=["the default", "another value"])
def test_a_param_left_to_its_default_is_tracked_like_a_stated_one(finished, project, batch_size):
    """params.yaml leaves seed_cnn.batch_size to its default (64); the training stage reads it all
    the same, from check_params' config/resolved/train/seed_cnn.json. Stating it with the default
    reruns nothing; with another value both engines rerun exactly seed_cnn's training, evaluation
    and report, and the run list stays as it is (nothing to write)."""
    import yaml

    from imgclf import config

    _, expected = finished
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    assert "batch_size" not in params["seed_cnn"] and config.load(path)["seed_cnn"]["batch_size"] == 64
    params["seed_cnn"]["batch_size"] = batch_size
    write_params(path, params)
    run(["imgclf", "runs", "--check"], project)
    changed = batch_size != 64
    assert snakemake_jobs(project) == ({"train": 1, "evaluate": 1, "report": 1} if changed else {})
    ran = run(["dvc", "repro"], project, timeout=900).stdout
    names = {line.split("'")[1] for line in ran.splitlines() if line.startswith("Running stage '")}
    assert names == {"check_params", *((DVC_STAGE["train"], DVC_STAGE["evaluate"], "report") if changed else ())}
    resolved = json.loads((project / "config/resolved/train/seed_cnn.json").read_text())
    assert resolved["seed_cnn.batch_size"] == batch_size
    assert dvc_up_to_date(project)
    assert (outputs(project) != expected) == changed


@pytest.mark.parametrize("engine", ["snakemake", "dvc"])
def test_two_selected_experiments_give_a_two_row_report(project, engine):
    """Selecting a second experiment (on the other data set) and writing the run list again: either
    engine runs just the new experiment's chain and a report of exactly the two."""

    path = project / "params.yaml"
    edit_params(path, {"experiments": ["cifar_base_cnn", "seed_cnn"]})
    stale = run(["dvc", "repro"], project, check=False)
    assert stale.returncode != 0 and "error: config/runs.yaml: out of date with params.yaml" in stale.stdout + stale.stderr
    run(["imgclf", "runs"], project)
    assert set(snakemake_jobs(project)) == {"sample", "download", "prepare", "train", "evaluate", "report"}
    rerun(project, engine)
    with open(project / "reports" / "results.csv") as handle:
        assert [row["experiment"] for row in csv.DictReader(handle)] == ["seed_cnn", "cifar_base_cnn"]
    assert both_idle(project)


def test_every_module_a_stage_loads_is_one_of_its_dependencies(project):
    """Each stage's command, run for real: every package module loaded by the end of the run is in
    the stage's deps in dvc.yaml (and so in the Snakemake rule's inputs), except the launcher
    (cli.py) and what it imports to read params (config.py and the registries), which
    check_params covers."""
    import sys

    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        spec = {stage.name: {"cmd": stage.cmd, "deps": [str(d.def_path) for d in stage.deps]}
                for stage in repo.index.stages}
    # the modules loaded by the launcher alone (cli.py and the params validation it imports, which
    # check_params covers) are printed first, then a line "--", then those loaded at the end
    probe = ("import sys\n"
             "def files(): return sorted(m.__file__ for n, m in list(sys.modules.items()) "
             "if n.split('.')[0] == 'imgclf' and getattr(m, '__file__', None))\n"
             "import imgclf.cli\nlauncher = files()\nrc = imgclf.cli.main(sys.argv[1:])\n"
             "print('\\n'.join(launcher + ['--'] + files()))\nsys.exit(rc)")
    for name, entry in spec.items():
        if name == "check_params":
            continue
        argv = shlex.split(entry["cmd"])[1:]
        result = run([sys.executable, "-c", probe, *argv], project, timeout=600)
        lines = result.stdout.splitlines()
        cut = lines.index("--")
        launcher = {"src/imgclf/" + line.split("/imgclf/", 1)[1] for line in lines[:cut] if line.endswith(".py")}
        loaded = {"src/imgclf/" + line.split("/imgclf/", 1)[1] for line in lines[cut + 1:] if line.endswith(".py")}
        assert {"src/imgclf/cli.py", "src/imgclf/config.py"} <= launcher and len(loaded) > len(launcher)
        assert loaded - launcher <= set(entry["deps"]), (name, sorted(loaded - launcher - set(entry["deps"])))


def _commit(project: Path, message: str) -> None:
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", message], project)


def test_metrics_and_plots_compare_in_a_fresh_clone_without_the_remote(project, tmp_path):
    """Results committed, then cloned with no DVC cache and no remote: HEAD's metrics and per-epoch
    plots are git files, so after a param change and `dvc repro` of one experiment,
    `dvc metrics diff` shows HEAD's value, the new one and the change; `dvc plots diff HEAD~1` and
    `dvc exp show` read both commits."""
    import yaml

    _commit(project, "results")
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not (clone / ".dvc" / "cache").exists() and not (clone / "models" / "seed_cnn").exists()
    metrics = "reports/metrics/seed_cnn/seed0.json"
    head = json.loads((clone / metrics).read_text())
    path = clone / "params.yaml"
    edit_params(path, {"seed_cnn.learning_rate": yaml.safe_load(path.read_text())["seed_cnn"]["learning_rate"] * 3})
    run(["dvc", "repro", DVC_STAGE["evaluate"]], clone, timeout=900)
    new = json.loads((clone / metrics).read_text())
    assert new["loss"] != head["loss"]
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], clone).stdout)
    assert diff[metrics]["loss"] == {"old": head["loss"], "new": new["loss"], "diff": pytest.approx(new["loss"] - head["loss"])}
    table = run(["dvc", "metrics", "diff", "--md"], clone).stdout
    assert f"| {metrics}" in table and "| loss " in table

    _commit(clone, "learning rate x3")
    shown = run(["dvc", "plots", "diff", "HEAD~1", "--json"], clone)
    assert "DVC failed" not in shown.stdout + shown.stderr and "errors" not in json.loads(shown.stdout)
    plots = json.loads(shown.stdout)["data"]
    for plot in ("reports/live/seed_cnn/seed0/plots/metrics/accuracy.tsv",
                 "reports/live/seed_cnn/seed0/plots/metrics/loss.tsv", "reports/eval/seed_cnn/seed0.confusion.csv"):
        content = plots[plot][0]["content"]
        values = content["data"]["values"]
        assert {point["rev"] for point in values} == {"HEAD~1", "workspace"}, (plot, values[:3])
    shown = run(["dvc", "exp", "show", "--csv", "--no-pager", "-n", "2"], clone)
    assert "DVC failed" not in shown.stdout + shown.stderr
    rows = list(csv.DictReader(io.StringIO(shown.stdout)))
    # columns named by file where two metrics files share a key (the live log has a loss too)
    assert {row[f"{metrics}:loss"] for row in rows} >= {str(head["loss"]), str(new["loss"])}, rows


def test_a_snakemake_config_override_runs_like_dvc_exp_run_set(finished, project):
    """`snakemake --config 'seed_cnn={epochs: 1}'` (Snakemake refuses the dotted form; this is its
    nearest) passes the same validation as params.yaml, reruns only what the key changes, and gives
    the numbers `dvc exp run -S seed_cnn.epochs=1` gives; dvc.lock is left as it was."""
    _, expected = finished
    bad = run(["snakemake", "--cores", "2", "--config", "seed_cnn={epochs: 0}"], project, check=False)
    assert bad.returncode != 0
    assert "params.yaml with overrides seed_cnn.epochs=0: seed_cnn.epochs: 0 is less than the minimum of 1" in \
        bad.stdout + bad.stderr
    assert outputs(project) == expected
    assert snakemake_jobs(project, "--config", "seed_cnn={mem_mb: 1234, runtime_min: 7}") == {}
    assert snakemake_jobs(project, "--config", "seed_cnn={epochs: 1}") == {"train": 1, "evaluate": 1, "report": 1}
    lock = (project / "dvc.lock").read_text()
    result = run(["snakemake", "--cores", "2", "--config", "seed_cnn={epochs: 1}"], project, timeout=900)
    assert "not recording in dvc.lock" in result.stdout + result.stderr
    assert (project / "dvc.lock").read_text() == lock
    meta = json.loads((project / "models/seed_cnn/seed0/train.json").read_text())
    assert meta["epochs"] == 1
    assert snakemake_jobs(project, "--config", "seed_cnn={epochs: 1}") == {}
    by_snakemake = outputs(project)
    run(["dvc", "exp", "run", "-S", "seed_cnn.epochs=1"], project, timeout=900)
    by_dvc = outputs(project)
    differ = sorted(name for name in by_dvc if by_dvc[name] != by_snakemake.get(name))
    assert differ == [] and by_dvc != expected, differ
