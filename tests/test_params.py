import copy
import json
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, edit_params, load_params, put, run, snakemake_commands, write_params
from imgclf import config, datasets, overrides, paths, stages
from imgclf.errors import PipelineError


@pytest.fixture
def params():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_params_files_are_valid():
    config.load(ROOT / "params.yaml")
    for name in ("config/full.yaml", "config/ci.yaml"):
        config.validate(load_params(name))


def restated(stated: dict, base: dict, prefix: str = "") -> list[str]:
    """The keys ``stated`` gives the value they already have in ``base``."""
    keys = []
    for key, value in stated.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            keys += restated(value, base[key], f"{prefix}{key}.")
        elif key in base and base[key] == value:
            keys.append(f"{prefix}{key}")
    return keys


# chosen on purpose where a reader looks for them, though they are the defaults
SHOWN = ["experiments", "data.imagenet200.source", "data.cifar10.source"]


def test_params_yaml_states_only_choices():
    """params.yaml holds what the embedded run chooses; every default is written once, in the
    registry (the schema's defaults)."""
    stated = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert restated(stated, config.validate({})) == SHOWN


@pytest.mark.parametrize("name", ["config/full.yaml", "config/ci.yaml"])
def test_profiles_state_only_what_differs(name):
    """A profile lists only the params it changes from params.yaml's values."""
    overlay = yaml.safe_load((ROOT / name).read_text())
    assert restated(overlay, config.load(ROOT / "params.yaml")) == []
    assert config.validate(load_params(name)) == config.validate(config.merge(load_params(), overlay))


def test_a_restated_default_is_caught(params):
    """The checks above can fail: a default written into params.yaml, or a profile value equal to
    params.yaml's, is named."""
    params["alexnet32"]["weight_decay"] = 0.0
    assert restated(params, config.validate({})) == [*SHOWN, "alexnet32.weight_decay"]
    assert restated({"seed_cnn": {"epochs": 8, "threads": 4}}, config.load(ROOT / "params.yaml")) == ["seed_cnn.epochs"]


def test_validation_fills_a_missing_knob(params):
    assert "weight_decay" not in params["alexnet32"] and "jpeg_draft" not in params["data"]
    filled = config.validate(copy.deepcopy(params))
    assert filled["alexnet32"]["weight_decay"] == 0.0 and filled["data"]["jpeg_draft"] is True
    assert filled["data"]["sources"] == datasets.BUILTIN_SOURCES  # the built-in sources, every one


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p["data"].update(image_size=4), "data.image_size: 4 is less than the minimum of 8"),
        (lambda p: p["data"].update(resize_filter="cubic"), "data.resize_filter: 'cubic' is not one of"),
        (lambda p: p["data"].update(colour=1), "data: unknown key 'colour'"),
        (lambda p: p["seed_cnn"].update(epochs=0), "seed_cnn.epochs: 0 is less than the minimum of 1"),
        (lambda p: p["seed_cnn"].update(epoch=3), "seed_cnn: unknown key 'epoch'"),
        (lambda p: p.update(resnet={}), "(top level): unknown key 'resnet'"),
        (lambda p: put(p, "data.sources.cifar10", {**datasets.BUILTIN_SOURCES["cifar10"], "md5": "xyz"}),
         "data.sources.cifar10.md5"),
        (lambda p: p["data"]["imagenet200"].update(source="mydata"),
         "data.imagenet200.source: 'mydata' is not in data.sources (known: cifar10, fashion_mnist, sample_cifar10"),
        (lambda p: p["data"]["imagenet200"].update(source="cifar10"),
         "data.imagenet200.source: 'cifar10' has layout 'cifar10_binary'; imagenet200 reads tiny_imagenet_zip or folder"),
        (lambda p: p["data"].setdefault("sources", {}).update(mydata={"url": "https://h/x.zip", "layout": "tiny_imagenet_zip"}),
         "data.sources.mydata: an archive source needs md5 and size"),
        (lambda p: p["data"].setdefault("sources", {}).update(mydata={"url": "https://h/x.zip", "md5": "0" * 32, "size": 1}),
         "data.sources.mydata: 'layout' is a required property"),
        (lambda p: p["data"].setdefault("sources", {}).update(mydata={"path": "x", "url": "https://h/x.zip", "layout": "folder"}),
         "data.sources.mydata: give either url or path"),
        (lambda p: p["data"].setdefault("sources", {}).update(MyData={"path": "x", "layout": "folder"}), "data.sources"),
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
    write_params(bad, params)
    result = run(["imgclf", "check-params", "--params", str(bad)], tmp_path, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        f"error: {bad}: alexnet32.learning_rate: -1 is less than or equal to the minimum of 0"], result.stderr


def test_snakemake_rejects_bad_params_before_any_job(tmp_path, params):
    """The Snakefile checks the params as it is read: the error is one line of its own, and
    Snakemake stops before it builds the DAG, so no job is even planned."""
    params["data"]["n_classes_typo"] = 3
    bad = tmp_path / "bad.yaml"
    write_params(bad, params)
    result = run(["snakemake", "--cores", "1", "--dry-run", "--configfile", str(bad)], ROOT, check=False)
    assert result.returncode != 0
    lines = (result.stdout + result.stderr).splitlines()
    assert [line for line in lines if "n_classes_typo" in line] == [
        "params.yaml with overrides data.n_classes_typo=3: data: unknown key 'n_classes_typo'"], lines
    planned = [line for line in lines if line.startswith(("Building DAG", "Job stats", "rule ", "localrule ", "job "))]
    assert planned == [], lines


def test_generated_files_are_in_sync():
    run(["imgclf", "schema", "--check"], ROOT)
    run(["imgclf", "runs", "--check"], ROOT)


def test_check_params_writes_each_stages_params(tmp_path, params):
    """DVC's first stage writes one file per stage with exactly the values that change its result
    (defaults filled in; training adds its experiment's record), and removes the files of stages
    no longer asked for."""
    from imgclf import resolved

    params = config.validate(params)
    out = tmp_path / "resolved"
    stale = out / "train" / "gone.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    resolved.write_checked(params, str(out))
    written = {str(p.relative_to(out)) for p in out.rglob("*.json")}
    assert written == {str(Path(path).relative_to(paths.RESOLVED_DIR)) for path in stages.stage_keys(params)}
    train = json.loads((out / "train" / "alexnet32.json").read_text())
    assert train["alexnet32.learning_rate"] == params["alexnet32"]["learning_rate"]
    assert "alexnet32.seeds" not in train and "alexnet32.mem_mb" not in train and "alexnet32.train_eval_images" not in train
    assert train["experiment"] == {"model": "alexnet32", "dataset": "imagenet200", "kind": "keras", "upstream": None,
                                   "module": "alexnet"}
    evaluate = json.loads((out / "evaluate" / "alexnet32.json").read_text())
    assert set(evaluate) == {f"alexnet32.{key}" for key in ("train_subset", "train_eval_images", "backend", "cpu_isa",
                                                             "threads", "run_eagerly")}


def test_a_stale_run_list_stops_both_engines(tmp_path):
    """Adding a seed changes the stage list: until config/runs.yaml is written again, Snakemake
    refuses to start and DVC's first stage (check_params) fails, naming the fix."""
    from conftest import make_project

    project = make_project(tmp_path / "p")
    edit_params(project / "params.yaml", {"alexnet32.seeds": [0, 7]})
    result = run(["snakemake", "-n", "--cores", "1"], project, check=False)
    assert result.returncode != 0 and "config/runs.yaml: out of date with params.yaml" in result.stdout + result.stderr
    result = run(["imgclf", "check-params", "--resolved", "r"], project, check=False)
    assert result.returncode == 2 and "run `imgclf runs`" in result.stderr and not (project / "r").exists()
    run(["imgclf", "runs"], project)
    assert "alexnet32-s7" in (project / "config/runs.yaml").read_text()
    assert "train@alexnet32-s7" in run(["dvc", "stage", "list"], project).stdout
    run(["snakemake", "-n", "--cores", "1"], project)


@pytest.mark.slow
def test_configfile_is_what_the_stage_commands_read(tmp_path):
    """README: ``snakemake --configfile FILE`` lays FILE over params.yaml, params.yaml untouched:
    each job's command reads params.yaml with what FILE changes that the stage reads (``--set``),
    and a stage run that way uses those values: prepared images at FILE's image_size."""
    from conftest import load_params, make_project

    project = make_project(tmp_path / "p", load_params("config/ci.yaml"))
    other = load_params("config/ci.yaml")
    other["data"]["image_size"] = 16
    write_params(project / "other.yaml", other)
    before = (project / "params.yaml").read_text()
    commands = snakemake_commands(project, "--forceall", "--configfile", "other.yaml")
    stage_commands = [c for c in commands if c.startswith("imgclf ") and not c.startswith("imgclf make-sample")]
    named = {c.split("--params ", 1)[1].split()[0] for c in stage_commands}
    assert len(stage_commands) > 20 and named == {"params.yaml"}, stage_commands[:3]
    changed = [c for c in stage_commands if "--set data.image_size=16" in c]
    assert [c.split()[1] for c in changed] == ["prepare", "prepare"], changed
    run(["snakemake", "data/prepared/cifar10", "--cores", "2", "--configfile", "other.yaml"], project, timeout=600)
    meta = json.loads((project / "data/prepared/cifar10/meta.json").read_text())
    assert meta["image_size"] == 16
    assert (project / "params.yaml").read_text() == before


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(PipelineError, match=f"^{tmp_path / 'nope.yaml'}: params file not found$"):
        config.load(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("data: [1, 2\n")
    with pytest.raises(PipelineError, match=rf"^{tmp_path / 'bad.yaml'}: not valid YAML \(while parsing a flow sequence\)$"):
        config.load(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(PipelineError, match=rf"^{tmp_path / 'list.yaml'}: expected a mapping at the top level$"):
        config.load(tmp_path / "list.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["seed_cnn"]["epochs"] = "three"
    write_params(tmp_path / "typo.yaml", params)
    with pytest.raises(PipelineError, match=rf"^{tmp_path / 'typo.yaml'}: seed_cnn.epochs: 'three' is not of type 'integer'$"):
        config.load(tmp_path / "typo.yaml")
    params["seed_cnn"]["epochs"] = 3
    params["data"]["imagenet200"].update(class_selection="list", wnids=["n1", "n2"], n_classes=3)
    with pytest.raises(PipelineError, match=r"^x.yaml: data.imagenet200.wnids: lists 2 classes but n_classes is 3$"):
        config.validate(params, "x.yaml")
    params["data"]["imagenet200"].update(class_selection="seeded", wnids=[], n_classes=200)
    params["cifar_densenet201_finetune"].update(train_subset=10, kfold=6)
    with pytest.raises(PipelineError, match=r"^x.yaml: cifar_densenet201_finetune.train_subset: 10 is too few for 6 folds$"):
        config.validate(params, "x.yaml")
    params["cifar_densenet201_finetune"].update(train_subset=None)
    params["data"]["bogus"], params["data"]["another"] = 1, 2
    with pytest.raises(PipelineError, match=r"^x.yaml: data: unknown key 'another', 'bogus'$"):
        config.validate(params, "x.yaml")


def test_validation_fills_defaults_without_touching_its_input(params):
    given = copy.deepcopy(params)
    filled = config.validate(params)
    assert params == given  # the caller's mapping is left as it was, nested sections included
    assert "wnids" not in given["data"]["imagenet200"] and "cpu_isa" not in given["seed_cnn"]
    assert filled["data"]["imagenet200"]["wnids"] == [] and filled["seed_cnn"]["cpu_isa"] == "native"
    filled["data"]["imagenet200"]["wnids"].append("n1")  # defaults are copies, not the schema's own lists
    filled["data"]["sources"]["cifar10"]["size"] = 1
    again = config.validate(copy.deepcopy(given))
    assert again["data"]["imagenet200"]["wnids"] == [] and again["data"]["sources"]["cifar10"]["size"] == 170052171


def test_experiment_selection_shapes_the_stage_table(params):
    params["experiments"] = ["alexnet32", "seed_cnn"]  # any order: registry order in the table
    params["alexnet32"]["seeds"] = [1, 2]
    table = stages.by_name(config.validate(params))
    runs = [(n, s) for n in ("seed_cnn", "alexnet32") for s in params[n]["seeds"]]
    assert stages.runs(config.validate(params)) == runs
    expected = {"sample@tiny_imagenet", "download_sample@imagenet200", "prepare@imagenet200", "report",
                *(stages.run_stage(kind, n, s) for n, s in runs for kind in ("train", "evaluate"))}
    assert set(table) == expected  # no CIFAR-10 download or prepare: no selected experiment uses it
    assert stages.stage_keys(config.validate(params))[table["report"].resolved] == [
        "experiments", "data.imagenet200.source", "seed_cnn.seeds", "alexnet32.seeds"]
    assert set(table["report"].deps) >= {paths.metrics_file(n, s) for n, s in runs}


@pytest.mark.parametrize(("chosen", "message"), [
    (["seed_cnn", "resnet"], "experiments.1: 'resnet' is not one of"),
    ([], "experiments: [] should be non-empty"),
    (["seed_cnn", "seed_cnn"], "experiments: ['seed_cnn', 'seed_cnn'] has non-unique elements"),
    (["cifar_densenet201_transfer"], "experiments: cifar_densenet201_transfer starts from densenet201's model, "
                                     "which is not selected; add densenet201"),
    (["densenet201", "cifar_densenet201_finetune"], "experiments: cifar_densenet201_finetune starts from "
                                                   "cifar_densenet201_transfer's model"),
])
def test_a_bad_selection_names_the_problem(params, chosen, message):
    params["experiments"] = chosen
    with pytest.raises(PipelineError) as error:
        config.validate(params, "params.yaml")
    assert str(error.value).startswith("params.yaml: ") and message in str(error.value)


def test_a_python_tag_in_params_is_never_executed(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "params.yaml"
    path.write_text(f'data: !!python/object/apply:os.system ["touch {marker}"]\n')
    result = run(["imgclf", "check-params", "--params", str(path)], tmp_path, check=False)
    assert result.returncode == 2 and result.stderr.startswith(f"error: {path}: not valid YAML (could not determine a constructor")
    assert result.stderr.count("\n") == 1 and not marker.exists()


BOMB = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else 'x'] * 10)}]\n" for i in range(9))  # 10**9 values
# merge keys multiply inside the YAML reader itself, while the mapping it builds stays small
MERGE_BOMB = "l0: &l0 {a: 1}\n" + "".join(f"l{i}: &l{i} {{<<: [{', '.join([f'*l{i - 1}'] * 9)}], k{i}: 1}}\n"
                                           for i in range(1, 10))


def test_aliases_are_counted_as_expanded():
    from imgclf import config

    # the mapping, its 3 keys, and the lists: a 1 + 2, b 1 + 2 x 3, c 1 + 2 x 7
    assert config.expanded_size(yaml.compose("a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]")) == 29
    assert config.expanded_size(yaml.compose("a: &a [1, *a]")) == float("inf")
    assert config.expanded_size(yaml.compose(BOMB)) > 10**9
    assert config.expanded_size(yaml.compose(MERGE_BOMB)) > 10**9


@pytest.mark.parametrize("text, why", [
    (BOMB, "its YAML aliases expand to {size:,} values (at most 1,000,000)"),
    (MERGE_BOMB, "its YAML aliases expand to {size:,} values (at most 1,000,000)"),
    ("a: &a [1, *a]\n", "a YAML alias refers to a value that contains it (an endless value)"),
])
def test_an_alias_bomb_is_refused_in_one_line_before_either_engine_reads_it(tmp_path, text, why):
    """Aliases or merge keys that expand to billions of values (or without end): check-params,
    Snakemake (whose own reading of params.yaml never came back) and `make dvc-run` (DVC's ran out
    of memory) stop in one line, and DVC never starts."""
    from conftest import make_project

    project = make_project(tmp_path / "p")
    from imgclf import config

    (project / "params.yaml").write_text((project / "params.yaml").read_text() + text)
    expected = "params.yaml: " + why.format(size=config.expanded_size(yaml.compose((project / "params.yaml").read_text())))
    result = run(["imgclf", "check-params"], project, check=False)
    assert result.returncode == 2 and result.stderr == f"error: {expected}\n"
    result = run(["snakemake", "-n", "--cores", "1"], project, check=False, timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    assert result.returncode != 0 and [line for line in lines if "YAML alias" in line] == [expected], lines
    result = run(["make", "-s", "dvc-run", "STAMP="], project, check=False, timeout=60)
    assert result.returncode != 0 and "Running stage" not in result.stdout
    assert [line for line in result.stderr.splitlines() if "YAML alias" in line] == [f"error: {expected}"]


# --- overrides: `imgclf ... --set key=value`, `snakemake --config 'section={key: value}'` ---


def test_snakemake_config_entries_become_typed_dotted_overrides(params):
    """Snakemake parses --config values with YAML's base loader (every scalar a string); they are
    typed the way the params file would type them, strings staying strings where the file has one;
    a value params.yaml already has (alexnet32.epochs: 3) is no override."""
    given = {"seed_cnn": {"epochs": "3", "optimizer": "sgd", "seeds": ["0", "2"], "train_subset": "null"},
             "experiments": ["seed_cnn"], "data": {"imagenet200": {"source": "off"}}}
    assert overrides.config_overrides({**given, "alexnet32": {"epochs": "3"}}, params) == {
        "seed_cnn.epochs": 3, "seed_cnn.optimizer": "sgd", "seed_cnn.seeds": [0, 2], "seed_cnn.train_subset": None,
        "experiments": ["seed_cnn"], "data.imagenet200.source": "off"}  # YAML alone would read "off" as False
    assert overrides.config_overrides({}, params) == {}


def test_overrides_go_through_the_same_validation(tmp_path, params):
    path = tmp_path / "params.yaml"
    write_params(path, params)
    loaded = config.load(path, {"seed_cnn.epochs": 3, "data.imagenet200.n_classes": 10})
    assert loaded["seed_cnn"]["epochs"] == 3 and loaded["data"]["imagenet200"]["n_classes"] == 10
    assert config.load(path)["seed_cnn"]["epochs"] == params["seed_cnn"]["epochs"]  # the file is untouched
    for overrides, message in (({"seed_cnn.epochs": 0}, "seed_cnn.epochs: 0 is less than the minimum of 1"),
                               ({"seed_cnn.epoch": 3}, "seed_cnn: unknown key 'epoch'"),
                               ({"seed_cnn.epochs.x": 3}, "seed_cnn.epochs.x: not a key of a params section")):
        with pytest.raises(PipelineError, match=f"{path} with overrides .*: {message}"):
            config.load(path, overrides)
    with pytest.raises(PipelineError) as caught:  # the error names every override, as --set spells it
        config.load(path, {"seed_cnn.epochs": 0, "alexnet32.epochs": 2})
    assert str(caught.value).startswith(f"{path} with overrides seed_cnn.epochs=0, alexnet32.epochs=2: seed_cnn.epochs: ")


@pytest.mark.parametrize("value", [3, 0.5, "sgd", None, True, [0, 1], "null", "3"])
def test_a_set_option_reads_back_its_value(value):
    key, text = overrides.format_override("seed_cnn.x", value).split("=", 1)
    assert overrides.parse_sets([f"{key}={text}"]) == {"seed_cnn.x": value}


def test_a_malformed_set_option_is_named():
    with pytest.raises(PipelineError, match="--set seed_cnn.epochs: expected KEY=VALUE"):
        overrides.parse_sets(["seed_cnn.epochs"])


def test_an_override_reaches_only_the_stages_that_read_it(params):
    """--config seed_cnn.epochs reaches seed_cnn's training commands, and nothing else: a stage's
    command (and so its outputs) changes only if it declares that param."""
    params = config.validate(params)
    plain = stages.by_name(params)
    overrides = {"seed_cnn.epochs": 3, "seed_cnn.mem_mb": 100}
    changed = stages.by_name(config.apply_overrides(params, overrides, "x"), overrides)
    differ = {name for name in plain if plain[name].cmd != changed[name].cmd}
    assert differ == {stages.run_stage("train", "seed_cnn", seed) for seed in params["seed_cnn"]["seeds"]}
    assert changed["train@seed_cnn-s0"].cmd.endswith(" --params params.yaml --set seed_cnn.epochs=3")


def test_the_cli_applies_set_options(tmp_path, params):
    path = tmp_path / "params.yaml"
    write_params(path, params)
    result = run(["imgclf", "check-params", "--params", str(path), "--set", "seed_cnn.batch_size=-1"], tmp_path,
                 check=False)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "seed_cnn.batch_size: -1 is less than the minimum of 1" in result.stderr
    run(["imgclf", "check-params", "--params", str(path), "--set", "seed_cnn.batch_size=32"], tmp_path)


def test_profile_cli_lays_the_overlay_over_params_yaml(tmp_path):
    """`imgclf params --profile ci` writes params.yaml with config/ci.yaml laid over it (comments
    kept), validated, and config/runs.yaml for it; again, the same bytes. `--show` prints every param."""
    from conftest import make_project

    project = make_project(tmp_path / "p")
    before = (project / "params.yaml").read_text()
    overlay = yaml.safe_load((project / "config/ci.yaml").read_text())
    result = run(["imgclf", "params", "--profile", "ci"], project)
    assert "params.yaml: params.yaml with config/ci.yaml laid over it" in result.stdout
    text = (project / "params.yaml").read_text()
    assert text.startswith("# config/ci.yaml laid over this file (`imgclf params --profile ci`)\n")
    assert before.splitlines()[0] in text and "# --- experiments: what differs from each one's defaults ---" in text
    merged = config.merge(yaml.safe_load(before), overlay)
    assert yaml.safe_load(text) == merged
    assert config.load(project / "params.yaml") == config.validate(merged)
    assert config.load(project / "params.yaml")["data"]["imagenet200"]["n_classes"] == 20
    run(["imgclf", "runs", "--check"], project)
    run(["imgclf", "params", "--profile", "ci"], project)
    assert (project / "params.yaml").read_text() == text
    shown = yaml.safe_load(run(["imgclf", "params", "--show"], project).stdout)
    assert shown == config.load(project / "params.yaml") and shown["seed_cnn"]["cpu_isa"] == "native"
    (tmp_path / "seeds.yaml").write_text("seed_cnn: {seeds: [0, 1, 2]}\n")  # an overlay given by path
    run(["imgclf", "params", "--profile", str(tmp_path / "seeds.yaml")], project)
    run(["imgclf", "runs", "--check"], project)  # the run list follows the seeds
    committed = run(["git", "show", "HEAD:config/runs.yaml"], project).stdout
    assert "seed_cnn-s2" not in committed and "seed_cnn-s2" in (project / "config/runs.yaml").read_text()


@pytest.mark.parametrize(("profile", "overlay", "message"), [
    ("nope", None, "error: --profile nope: config/nope.yaml not found (profiles: ci, full)"),
    ("bad", "seed_cnn: {epochs: 0}\n",
     "error: params.yaml with profile config/bad.yaml: seed_cnn.epochs: 0 is less than the minimum of 1"),
    ("typo", "seed_cnn: {epoch: 3}\n", "error: params.yaml with profile config/typo.yaml: seed_cnn: unknown key 'epoch'"),
    ("list", "- 1\n", "error: config/list.yaml: expected a mapping at the top level"),
])
def test_a_bad_profile_is_refused_in_one_line(tmp_path, profile, overlay, message):
    (tmp_path / "config").mkdir()
    for name in ("ci", "full"):
        (tmp_path / "config" / f"{name}.yaml").write_text((ROOT / "config" / f"{name}.yaml").read_text())
    if overlay is not None:
        (tmp_path / "config" / f"{profile}.yaml").write_text(overlay)
    params = (ROOT / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(params)
    result = run(["imgclf", "params", "--profile", profile], tmp_path, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert [line for line in result.stderr.splitlines() if line.strip()] == [message], result.stderr
    assert (tmp_path / "params.yaml").read_text() == params
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config", "params.yaml"]  # nothing written beside it


def test_several_configfiles_are_laid_over_params_yaml_in_order():
    """As in any Snakemake workflow, several --configfile are laid over params.yaml in order (and
    --config on top); the stages read params.yaml with the differences (``--set``)."""
    commands = [command for command in snakemake_commands(ROOT, "--forceall", "--configfile", "config/ci.yaml",
                                                           "config/full.yaml", "--config", "seed_cnn={epochs: 2}")
                if command.startswith("imgclf train seed_cnn ")]
    assert len(commands) == 1  # full.yaml's seeds: [0] over ci.yaml's [0, 1]
    assert "--set seed_cnn.epochs=2 " in commands[0] and "--set seed_cnn.threads=4 " in commands[0]


def test_a_run_depends_on_its_sections_result_keys_not_on_scheduling_runs_or_evaluation():
    """What a training run's record (train.json, the resolved params) keeps of its section: every
    key but the cluster requests, the seed list and what only the evaluation reads."""
    from imgclf import experiments

    section = config.load(ROOT / "params.yaml")["cifar_densenet201_finetune"]
    kept = experiments.result_params(section)
    assert set(section) - set(kept) == {"runtime_min", "mem_mb", "gpus", "seeds", "train_eval_images"}
    assert {"kfold", "lr_factor", "unfreeze_from", "epochs", "threads", "cpu_isa"} <= set(kept)
    assert kept == {key: section[key] for key in kept}


def test_an_experiment_is_found_by_name_and_an_unknown_one_is_refused_naming_the_known():
    from imgclf import experiments

    assert all(experiments.get(name).name == name for name in experiments.EXPERIMENTS)
    with pytest.raises(PipelineError) as caught:
        experiments.get("resnet50")
    assert str(caught.value) == ("unknown experiment 'resnet50'; known: seed_cnn, seed_cnn_hwc, autokeras, alexnet32, "
                                 "densenet121, densenet169, densenet201, densenet161, densenet121_small_stem, "
                                 "cifar_base_cnn, cifar_densenet201_transfer, cifar_densenet201_finetune")
