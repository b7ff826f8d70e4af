"""The stage table and dvc.yaml agree: DVC's own reading of dvc.yaml (its foreach families over
config/runs.yaml) gives every stage of the table with the same command, the same data, code and
params files, and the same outputs; each family depends on exactly the modules its command imports;
config/runs.yaml and the params schema are what the code writes, and a stale run list is named."""

import json
import subprocess

import pytest
import yaml

from conftest import ROOT, digest, load_params, own_work_tree
from imgclf import codedeps, config, paths, resolved, stages
from imgclf.errors import PipelineError

LIVE = ("metrics.json", "plots")  # dvc.yaml tracks DVCLive's two parts; Snakemake the directory


def dvc_stages(root=ROOT) -> dict:
    """DVC's stages of dvc.yaml, as DVC itself interpolates them: name -> (cmd, deps, outs)."""
    from dvc.repo import Repo
    from dvc.scm import SCM

    # inside mutmut's mutants/ (which the enclosing work tree's .gitignore hides) DVC reads it without git
    scm = None if root != ROOT or own_work_tree() else SCM(str(root), no_scm=True)
    with Repo(str(root), scm=scm) as repo:
        return {stage.addressing: (stage.cmd, sorted(str(d.def_path) for d in stage.deps),
                                   sorted(str(o.def_path) for o in stage.outs), stage.outs)
                for stage in repo.index.stages}


def expected_outs(stage: stages.Stage) -> list[str]:
    outs = []
    for out in stage.outs:
        outs += [f"{out}/{part}" for part in LIVE] if out.startswith("reports/live/") else [out]
    return sorted(outs)


def test_dvc_yaml_runs_the_stage_table():
    params = config.load(ROOT / "params.yaml")
    table, dvc = stages.by_name(params), dvc_stages()
    assert set(dvc) == set(table) | {"check_params"}
    for name, stage in table.items():
        cmd, deps, outs, _ = dvc[name]
        assert cmd == stage.cmd, name
        data = ["reports/metrics", "reports/live", "reports/eval"] if name == "report" else stage.deps
        assert deps == sorted({*data, *stage.code, *([stage.resolved] if stage.resolved else [])}), name
        assert outs == expected_outs(stage), name


def test_each_family_depends_on_the_modules_its_command_imports():
    """dvc.yaml's code lists are written out by hand: each equals the family's import closure (a
    new module imported by a stage's command must be added to its family here)."""
    import yaml

    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, entry in spec.items():
        body = entry.get("do", entry)
        listed = [dep for dep in body["deps"] if dep.startswith("src/")]
        family = stages.base_family(name)
        assert listed == list(codedeps.family(family, stages.own_modules().get(family, frozenset()))), name
        assert ("${item.module}" in body["deps"]) == (family in stages.own_modules()), name


def test_committed_run_list_and_schema_are_what_the_code_writes():
    params = config.load(ROOT / "params.yaml")
    assert resolved.runs_text(params) == (ROOT / paths.RUNS_FILE).read_text()
    assert config.schema_json() == (ROOT / "workflow/schemas/params.schema.json").read_text()
    schema = json.loads(config.schema_json())
    assert schema["additionalProperties"] is False and "required" not in schema  # params.yaml may leave anything out


def test_an_outdated_run_list_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # params.yaml is resolved from the working directory, as the engines do
    params = config.load(ROOT / "params.yaml")
    path = tmp_path / "runs.yaml"
    path.write_text(resolved.runs_text(params))
    resolved.check_runs(params, "params.yaml", str(path))  # in sync: nothing to say
    params["alexnet32"]["seeds"] = [0, 9]
    with pytest.raises(PipelineError, match=r"runs.yaml: out of date with params.yaml .*run `imgclf runs`"):
        resolved.check_runs(params, "params.yaml", str(path))
    # another params file: dvc.yaml follows params.yaml only, so nothing is checked
    resolved.check_runs(params, "config/full.yaml", str(path))
    resolved.check_runs(params, "params.yaml", str(tmp_path / "missing.yaml"))  # no DVC here: nothing to check


def test_run_paths_plots_and_metrics_are_git_files():
    """What `dvc metrics diff` and `dvc plots diff` read of another commit must be in git: every
    metrics and plots output is cache: false, and .gitignore does not hide it."""
    _, _, _, train_outs = dvc_stages()["train@seed_cnn-s1"]
    _, _, _, evaluate_outs = dvc_stages()["evaluate@seed_cnn-s1"]
    by_path = {str(o.def_path): o for o in [*train_outs, *evaluate_outs]}
    assert by_path["models/seed_cnn/seed1"].use_cache
    assert by_path["reports/live/seed_cnn/seed1/metrics.json"].metric
    assert by_path["reports/live/seed_cnn/seed1/plots"].plot == {"x": "step"}
    assert by_path["reports/metrics/seed_cnn/seed1.json"].metric
    assert by_path["reports/eval/seed_cnn/seed1.confusion.csv"].plot["template"] == "confusion"
    git_files = [path for path, out in by_path.items() if not out.use_cache]
    assert len(git_files) == 5
    if not own_work_tree():  # mutmut's mutants/: the enclosing work tree ignores all of it
        return
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *git_files], cwd=ROOT, capture_output=True, text=True)
    assert ignored.stdout == "", f"git ignores: {ignored.stdout}"
    kept = subprocess.run(["git", "check-ignore", "--no-index", "models/seed_cnn/seed1", "data/prepared/cifar10"],
                          cwd=ROOT, capture_output=True, text=True)
    assert len(kept.stdout.split()) == 2  # the cached outputs stay out of git


def test_dvc_cannot_take_a_stage_list_from_vars(tmp_path):
    """Why each family's dvc.yaml entry lists its code by hand and takes one ``${item.module}``:
    DVC checks the schema before it interpolates, so a foreach stage cannot take a whole dependency
    list from ``vars``."""
    (tmp_path / "runs.yaml").write_text("runs:\n  a: {deps: [x, y]}\n  b: {deps: [x]}\n")
    (tmp_path / "dvc.yaml").write_text("vars:\n  - runs.yaml\nstages:\n  train:\n    foreach: ${runs}\n    do:\n"
                                       "      cmd: echo ${key}\n      deps: ${item.deps}\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=tmp_path, check=True)
    result = subprocess.run(["dvc", "stage", "list"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0 and "expected a list" in result.stdout + result.stderr


def test_each_data_set_reads_the_source_it_names():
    """A data set's download stage fetches its own source's archive and reads exactly that
    source's params; the embedded sample is generated only where it is the source."""
    params = config.load(ROOT / "params.yaml")
    table = stages.by_name(params)
    keys = stages.stage_keys(params)
    assert keys[table["download_sample@imagenet200"].resolved] == ["data.imagenet200.source",
                                                                    "data.sources.sample_tiny_imagenet"]
    assert table["download_sample@imagenet200"].deps == ["data/sample/tiny-imagenet-200.zip"]
    assert {"sample@tiny_imagenet", "sample@cifar10"} <= set(table)
    params["data"]["imagenet200"]["source"] = "tiny_imagenet"  # the official archive
    table, keys = stages.by_name(params), stages.stage_keys(params)
    assert keys[table["download@imagenet200"].resolved] == ["data.imagenet200.source", "data.sources.tiny_imagenet"]
    assert table["download@imagenet200"].deps == [] and "sample@tiny_imagenet" not in table
    assert table["download@imagenet200"].outs == ["data/raw/imagenet200.zip"]
    assert table["download_sample@cifar10"].outs == ["data/raw/cifar10.tar.gz"] and "sample@cifar10" in table
    assert "data.imagenet200.source" in keys[table["report"].resolved]


def test_the_report_reads_every_runs_metrics_curves_and_details():
    params = config.load(ROOT / "params.yaml")
    deps = set(stages.by_name(params)["report"].deps)
    for name, seed in stages.runs(params):
        assert {f"reports/metrics/{name}/seed{seed}.json", f"reports/live/{name}/seed{seed}",
                f"reports/eval/{name}/seed{seed}"} <= deps, (name, seed)


def test_upstream_run_of_the_same_seed():
    """A transfer run starts from the DenseNet-201 run of its own seed where there is one, else
    from its first."""
    params = config.validate(load_params("config/ci.yaml"))
    params["densenet201"]["seeds"] = [0, 1]
    params["cifar_densenet201_transfer"]["seeds"] = [1, 2]
    table = stages.by_name(params)
    assert table["train_upstream@cifar_densenet201_transfer-s1"].deps[-1] == "models/densenet201/seed1"
    assert "--upstream models/densenet201/seed1 " in table["train_upstream@cifar_densenet201_transfer-s1"].cmd
    assert table["train_upstream@cifar_densenet201_transfer-s2"].deps[-1] == "models/densenet201/seed0"
    assert all(stage.cmd.endswith("--params params.yaml") for stage in table.values() if stage.family != "sample")


def test_folder_source_replaces_the_tiny_imagenet_archive(tmp_path):
    params = config.validate(load_params("config/ci.yaml"))
    params["data"]["sources"]["imagenet"] = {"path": str(tmp_path / "imagenet"), "layout": "folder"}
    params["data"]["imagenet200"]["source"] = "imagenet"
    table = stages.by_name(params)
    prepare = table["prepare_folder@imagenet200"]  # read in place: DVC hashes the tree
    assert prepare.deps == [str(tmp_path / "imagenet")] and f'--source "{tmp_path / "imagenet"}" ' in prepare.cmd
    assert prepare.code[-1] == "src/imgclf/sources/folder.py"
    assert not any(name.startswith(("download", "sample@tiny")) and "imagenet200" in name or name == "sample@tiny_imagenet"
                   for name in table)  # read in place
    assert table["prepare@cifar10"].deps == ["data/raw/cifar10.tar.gz"]  # CIFAR-10 keeps its archive


def test_snakemakes_trigger_for_a_folder_source_is_its_listing_and_a_missing_path_is_named(tmp_path):
    """Snakemake's input in place of a folder source: an image tree's listing digest (names, sizes,
    times), an IDX folder's content digest; an archive source has none; a source path that is not
    there stops both engines in one line naming the params key."""
    import os

    from imgclf.sources import tree

    params = config.validate(load_params("config/ci.yaml"))
    assert stages.source_listings(params, "params.yaml") == {}  # the embedded samples are archives
    images, idx = tmp_path / "images", tmp_path / "idx"
    (images / "cat").mkdir(parents=True)
    (images / "cat" / "a.jpg").write_bytes(b"jpeg")
    idx.mkdir()
    (idx / "train-images-idx3-ubyte").write_bytes(b"idx")
    params["data"]["sources"]["imagenet"] = {"path": str(images), "layout": "folder"}
    params["data"]["sources"]["idx"] = {"path": str(idx), "layout": "mnist_idx", "classes": [str(i) for i in range(10)]}
    params["data"]["imagenet200"]["source"], params["data"]["cifar10"]["source"] = "imagenet", "idx"
    listings = stages.source_listings(params, "params.yaml")
    assert listings == {"imagenet200": tree.listing_digest(images), "cifar10": tree.content_digest(idx)}
    os.utime(idx / "train-images-idx3-ubyte", (1, 1))  # a time alone leaves an IDX folder's digest
    os.utime(images / "cat" / "a.jpg", (1, 1))  # and changes an image tree's
    assert stages.source_listings(params, "params.yaml") == {"imagenet200": tree.listing_digest(images),
                                                             "cifar10": listings["cifar10"]} != listings
    params["data"]["sources"]["imagenet"]["path"] = str(tmp_path / "gone")
    with pytest.raises(PipelineError) as caught:
        stages.source_listings(params, "params.yaml")
    assert str(caught.value) == f"params.yaml: data.sources.imagenet.path: {tmp_path / 'gone'} does not exist"


def test_each_experiment_names_the_module_of_its_model():
    """Training imports only the experiment's model module: the one whose @register_model defines
    the model (read from the sources), or its kind's module."""
    from imgclf import experiments, models

    for experiment in experiments.EXPERIMENTS.values():
        module = experiment.module
        assert (ROOT / codedeps.model_module(module)).is_file(), experiment.name
        if experiment.kind == "keras":
            text = (ROOT / codedeps.model_module(module)).read_text()
            assert f"@register_model\ndef {experiment.model}(" in text, experiment.name
    assert models.module_of("densenet201") == "densenet" and models.module_of("seed_cnn_hwc") == "seed_cnn"


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
    table = stages.stage_list(config.apply_overrides(params, overrides, "x") if override else params, overrides)
    assert _job_commands(out) == {stage.cmd for stage in table}
    assert any(" --upstream models/densenet201/seed0 " in stage.cmd for stage in table)
    if override:
        assert sum("--set seed_cnn.epochs=3" in command for command in _job_commands(out)) == len(params["seed_cnn"]["seeds"])


def test_a_run_another_starts_from_trains_first(tmp_path):
    """Snakemake gives the training of a run that another starts from (densenet201 for the transfer,
    the transfer for the fine-tuning) priority, so the chain does not run alone at the end."""
    import re

    from conftest import make_project, run

    project = make_project(tmp_path / "p")
    out = run(["snakemake", "--dry-run", "--forceall", "--cores", "2"], project).stdout
    prioritized = set()
    for job in out.split("\n\n"):
        found = re.search(r"rule train:.*?wildcards: experiment=(\w+), seed=\d+", job, re.S)
        if found and re.search(r"^\s+priority: 1$", job, re.M):
            prioritized.add(found[1])
    assert prioritized == {"densenet201", "cifar_densenet201_transfer"}


def test_a_snakemake_run_is_recorded_in_dvc_lock_with_its_outputs_times_kept(tmp_path, monkeypatch):
    """``imgclf record`` (Snakemake's success hook; called here in this process): the stages a run
    ran, and check_params, go into dvc.lock with their outputs' hashes, after which DVC has nothing
    to do for them; the outputs keep their file times (Snakemake compares them). A stage the run list
    lacks, a stage without its output and a directory that is no DVC project are each one line."""
    from conftest import make_project, run as run_command

    project = make_project(tmp_path / "p")
    monkeypatch.chdir(project)
    params = config.load("params.yaml")
    names = ["sample@tiny_imagenet", "download_sample@imagenet200"]
    outs = [project / "data/sample/tiny-imagenet-200.zip", project / "data/raw/imagenet200.zip"]
    for path in outs:  # what the two stages wrote (dvc commit hashes whatever is there)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(path.name.encode())
    times = [path.stat().st_mtime_ns for path in outs]
    assert resolved.record(params, names) == "dvc.lock: 2 stages recorded"
    assert [path.stat().st_mtime_ns for path in outs] == times
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    assert {"check_params", *names} <= set(lock)
    assert lock["download_sample@imagenet200"]["outs"][0]["md5"] == digest(outs[1])
    status = run_command(["dvc", "status", "--json", "check_params", *names], project).stdout
    assert json.loads(status) == {}
    assert resolved.record(params, ["train@nothing-s9"]) == (
        "not recording in dvc.lock: train@nothing-s9 not in config/runs.yaml (run `imgclf runs`)")
    failed = resolved.record(params, ["prepare@imagenet200"])  # its output was never made
    assert failed.startswith("warning: dvc commit failed; dvc.lock not updated: ") and failed.endswith(
        " (then run `make sync` or `dvc commit`)") and "\n" not in failed
    monkeypatch.chdir(tmp_path)
    assert resolved.record(params, names) == "not a DVC repository: nothing recorded"


def test_files_dated_in_the_future_are_refused_in_one_line_naming_the_newest(tmp_path, monkeypatch):
    """What Snakemake compares (the stages' outputs and code, the resolved params files) dated over a
    second after now stops make sync and both engines in one line: the newest such file, how far
    ahead, how many more, and the command that sets their times to now. A file no stage reads or
    writes is left alone."""
    import os
    import time

    from conftest import make_project

    project = make_project(tmp_path / "p")
    monkeypatch.chdir(project)
    params = config.load("params.yaml")
    now = time.time()
    model = project / "models/seed_cnn/seed0/model.keras"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"weights")
    os.utime(model, (now, now))
    os.utime(model.parent, (now, now))
    (project / "notes.txt").write_text("mine")
    os.utime(project / "notes.txt", (now + 7200, now + 7200))  # no stage's file
    os.utime(project / "src/imgclf/train.py", (now + 0.5, now + 0.5))  # within a second
    stages.check_clock(params, now)
    os.utime(model, (now + 3 * 3600, now + 3 * 3600))
    os.utime(project / "src/imgclf/evaluate.py", (now + 3600, now + 3600))
    with pytest.raises(PipelineError) as caught:
        stages.check_clock(params, now)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now + 3 * 3600))
    assert str(caught.value) == (
        f"models/seed_cnn/seed0/model.keras: modified {when}, 3.0 h ahead of this machine's clock (and 1 more); "
        "Snakemake would take it for clock skew and remove outputs. Fix the clock, or set such times to now "
        "(find models src -newermt now -exec touch -h -c {} +), then run this again")
