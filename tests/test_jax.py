"""Keras' JAX backend (``backend: jax``): the ci profile's seed_cnn, the paper's model, trained and
evaluated by the pipeline's own commands on JAX, scores within the seed spread of the same runs on
TensorFlow (three seeds each, compared by their medians: at the ci profile's sizes one run in a few
collapses onto few classes, in either backend and depending on the CPU's instruction sets); what is
TensorFlow's alone is refused in one line. (A JAX run of cifar_base_cnn, with augmentation, dropout
and BatchNorm, killed mid-epoch and resumed to the undisturbed JAX run's weights:
tests/test_resume.py.)"""

import json
import math
import statistics

import pytest
import yaml

from conftest import load_params, make_project, run, write_params

pytestmark = pytest.mark.slow
SEEDS = {"seed_cnn": [0, 1, 2]}
DATASET = {"seed_cnn": "imagenet200"}


@pytest.fixture(scope="module")
def scores(module_tmp):
    """Test top-1 of every (experiment, backend, seed), and the test split's size."""
    params = load_params("config/ci.yaml")
    params["experiments"] = list(SEEDS)
    for name, seeds in SEEDS.items():
        params[name]["seeds"] = seeds
    project = make_project(module_tmp / "p", params)
    run(["snakemake", "--cores", "2", *(f"data/prepared/{d}" for d in DATASET.values())], project, timeout=900)
    found = {}
    for name, seeds in SEEDS.items():
        for backend in ("tensorflow", "jax"):
            for seed in seeds:
                model, metrics = f"models/{backend}/{name}/seed{seed}", f"metrics/{backend}/{name}/seed{seed}.json"
                common = ["--seed", str(seed), "--data", f"data/prepared/{DATASET[name]}", "--set", f"{name}.backend={backend}"]
                run(["imgclf", "train", name, *common, "--out", model], project, timeout=900)
                run(["imgclf", "evaluate", name, *common, "--model", model, "--metrics", metrics,
                     "--out", f"eval/{backend}/{name}/seed{seed}"], project, timeout=900)
                assert json.loads((project / model / "train.json").read_text())["backend"] == backend
                found[name, backend, seed] = json.loads((project / metrics).read_text())
    return found


@pytest.mark.parametrize("name", list(SEEDS))
def test_jax_runs_score_within_the_tensorflow_seed_spread(scores, name):
    """The JAX runs' median test top-1 lies within the TensorFlow runs' range, widened by two
    standard errors of a top-1 on this test split (the spread a handful of seeds can miss)."""
    tf = [scores[name, "tensorflow", seed]["top1"] for seed in SEEDS[name]]
    jax = [scores[name, "jax", seed]["top1"] for seed in SEEDS[name]]
    images = scores[name, "tensorflow", SEEDS[name][0]]["test_images"]
    middle = statistics.median(tf)
    margin = 2 * math.sqrt(max(middle * (1 - middle), 1 / images) / images)
    assert min(tf) - margin <= statistics.median(jax) <= max(tf) + margin, (tf, jax, margin)
    assert all(scores[name, "jax", seed]["top1"] > scores[name, "jax", seed]["chance_top1"] for seed in SEEDS[name])


def test_what_is_tensorflows_alone_is_refused_in_one_line(tmp_path):
    from conftest import ROOT

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    write_params(tmp_path / "params.yaml", params)
    result = run(["imgclf", "check-params", "--set", "autokeras.backend=jax"], tmp_path, check=False)
    assert result.returncode == 2 and result.stderr.splitlines() == [
        "error: params.yaml with overrides autokeras.backend=jax: autokeras.backend: AutoKeras runs on the TensorFlow "
        "backend only"]
