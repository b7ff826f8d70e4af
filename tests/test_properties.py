"""Properties of the pure cores that decide numbers, over generated inputs (Hypothesis): the
stratified split and the training subsets keep every class and never overlap, top-k accuracy is
monotone in k, the report's mean ± std and flags behave for any metrics, and the params overlays
(``config.merge``, ``--set``, Snakemake's ``--config``, ``imgclf params --profile``) read back
what they were given."""

import copy
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import ROOT, put, write_params
from imgclf import config, evaluate, overrides, report, splits

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def class_labels(draw, min_per_class=2, max_classes=12, max_per_class=40):
    """Shuffled integer labels: 2..max_classes classes, each with its own count."""
    counts = draw(st.lists(st.integers(min_per_class, max_per_class), min_size=2, max_size=max_classes))
    labels = np.repeat(np.arange(len(counts)), counts)
    order = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).permutation(len(labels))
    return labels[order]


@SETTINGS
@given(labels=class_labels(), fraction_scale=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
def test_stratified_split_is_a_partition_that_keeps_every_class(labels, fraction_scale, seed):
    counts = np.bincount(labels)
    # the fractions prepare accepts (_check_carve): every class gets a held-out image and keeps one
    low, high = 1 / counts.min(), 1 - 1 / counts.min()
    fraction = low + fraction_scale * (high - low)
    held_total = int(np.ceil(fraction * len(labels)))
    assume(held_total >= len(counts) and len(labels) - held_total >= len(counts))  # a stratum per class on each side
    kept, held = splits.stratified_split(labels, fraction, seed)
    assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(len(labels)))  # disjoint, complete
    assert np.all(np.diff(kept) > 0) and np.all(np.diff(held) > 0)  # sorted, so stored order is kept
    assert set(labels[kept]) == set(labels[held]) == set(range(len(counts)))
    per_class = np.bincount(labels[held], minlength=len(counts))
    assert per_class.sum() == held_total  # scikit-learn rounds the total up
    assert np.all(np.abs(per_class - held_total * counts / len(labels)) <= 1 + 1e-9)  # in proportion to each class
    again = splits.stratified_split(labels, fraction, seed)
    assert np.array_equal(again[0], kept) and np.array_equal(again[1], held)


@SETTINGS
@given(labels=class_labels(min_per_class=1), size_scale=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
def test_subset_keeps_every_class_without_repeats(labels, size_scale, seed):
    n_classes = len(np.unique(labels))
    size = n_classes + int(round(size_scale * (len(labels) - n_classes)))
    images = np.arange(len(labels)).astype(np.int64)  # each "image" is its own index
    chosen, chosen_labels = splits.subset(images, labels, size, seed, "x.train_subset")
    assert len(chosen) == size and len(set(chosen.tolist())) == size
    assert np.array_equal(labels[chosen], chosen_labels)
    assert set(chosen_labels.tolist()) == set(range(n_classes))
    again, _ = splits.subset(images, labels, size, seed, "x.train_subset")
    assert np.array_equal(again, chosen)


@SETTINGS
@given(n=st.integers(1, 40), classes=st.integers(2, 12), seed=st.integers(0, 2**31 - 1), ties=st.booleans())
def test_top_k_accuracy_is_monotone_in_k(n, classes, seed, ties):
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.ones(classes), size=n)
    if ties:
        probabilities = np.round(probabilities, 1)  # many equal probabilities
    labels = rng.integers(0, classes, n)
    curve = [evaluate.top_k_accuracy(probabilities, labels, k) for k in range(1, classes + 1)]
    assert all(a <= b for a, b in zip(curve, curve[1:]))
    assert curve[-1] == 1.0
    assert curve[0] == pytest.approx(np.mean(probabilities.argmax(axis=1) == labels))
    result = evaluate.scores(probabilities, labels)
    assert result["top1"] == curve[0] and result["top5"] == curve[min(5, classes) - 1]
    assert result["loss"] >= 0
    order = rng.permutation(n)  # the images' order does not matter
    assert evaluate.scores(probabilities[order], labels[order]) == pytest.approx(result)


@SETTINGS
@given(values=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8))
def test_mean_and_std_over_seeds(values):
    mean, std = report._mean_std(values)
    assert min(values) - 1e-12 <= mean <= max(values) + 1e-12
    if len(values) == 1:
        assert std == 0.0
    else:
        assert std == pytest.approx(np.std(values, ddof=1), abs=1e-12)


def _flag_names(top1, train_top1, share, chance):
    found = report.flags({"top1": top1, "train_top1": train_top1, "top_class_share": share, "chance_top1": chance})
    return {text.split(":")[0].split(" (")[0] for text in found}


@SETTINGS
@given(top1=st.floats(0, 1), train_top1=st.floats(0, 1), share=st.floats(0, 1), classes=st.integers(2, 1000),
       more=st.floats(0, 1))
def test_flags_are_monotone(top1, train_top1, share, classes, more):
    """A more collapsed spread never loses the collapse flag; a better test top-1 never gains the
    chance flag; a better train top-1 never loses it; a better top-1 on either split never gains
    the nothing-learned flag."""
    chance = 1 / classes
    base = _flag_names(top1, train_top1, share, chance)
    assert ("collapsed" in base) <= ("collapsed" in _flag_names(top1, train_top1, min(1, share + more), chance))
    assert ("chance on test" in _flag_names(min(1, top1 + more), train_top1, share, chance)) <= ("chance on test" in base)
    assert ("chance on test" in base) <= ("chance on test" in _flag_names(top1, min(1, train_top1 + more), share, chance))
    assert "collapsed" not in _flag_names(top1, train_top1, min(share, 0.49), chance)  # under half: never
    assert "chance on test" not in _flag_names(max(top1, 2.01 * chance), train_top1, share, chance)
    both = "chance on both splits"
    assert (both in _flag_names(min(1, top1 + more), train_top1, share, chance)) <= (both in base)
    assert (both in _flag_names(top1, min(1, train_top1 + more), share, chance)) <= (both in base)
    assert both not in _flag_names(top1, max(train_top1, 2.01 * chance), share, chance)


@SETTINGS
@given(top1=st.floats(0, 1), train_top1=st.floats(0, 1), share=st.floats(0, 1))
def test_flags_at_200_classes_follow_the_documented_rule(top1, train_top1, share):
    """README: collapsed at >= 50 % of predictions on one class; chance on both splits at <= 2x
    chance on each; chance on test at <= 2x chance while train top-1 is >= 10x chance."""
    names = _flag_names(top1, train_top1, share, 1 / 200)
    assert ("collapsed" in names) == (share >= 0.5)
    assert ("chance on both splits" in names) == (top1 <= 0.01 and train_top1 <= 0.01)
    assert ("chance on test" in names) == (top1 <= 0.01 and train_top1 >= 0.05)


# --- params overlays: config.merge, `--set`, Snakemake's `--config`, `imgclf params --profile` ---

OVERLAY_SETTINGS = settings(SETTINGS, max_examples=40)
KEYS = st.sampled_from("abc") | st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)  # a, b, c: keys that meet
# no control characters (YAML cannot carry them unescaped) and no lone surrogates
TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
                      max_leaves=8)
MAPPINGS = st.dictionaries(KEYS, VALUES, max_size=5)


def _leaves(node: dict, prefix: tuple = ()) -> dict:
    """path -> value for every value of a nested mapping that is not itself a non-empty mapping."""
    found = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            found.update(_leaves(value, (*prefix, key)))
        else:
            found[(*prefix, key)] = value
    return found


def _at(node, path: tuple):
    for key in path:
        node = node[key]
    return node


def _laid_over(overlay: dict, path: tuple) -> bool:
    """Whether ``overlay`` sets ``path`` or replaces a mapping on the way to it."""
    node = overlay
    for depth, key in enumerate(path):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
        if not isinstance(node, dict) or depth == len(path) - 1:
            return True
    return False


@OVERLAY_SETTINGS
@given(base=MAPPINGS, overlay=MAPPINGS)
def test_merge_reads_back_the_overlay_and_keeps_the_rest(base, overlay):
    """``config.merge``: every value of the overlay reads back from the result, every value of
    the base the overlay does not reach stays, nothing else appears; an empty overlay (or base)
    changes nothing, laying the overlay twice is laying it once, and the inputs are left as given."""
    given_base, given_overlay = copy.deepcopy(base), copy.deepcopy(overlay)
    merged = config.merge(base, overlay)
    assert base == given_base and overlay == given_overlay
    for path, value in _leaves(overlay).items():  # an empty mapping adds no key to the one it is laid over
        assert isinstance(_at(merged, path), dict) if value == {} else _at(merged, path) == value, path
    for path, value in _leaves(base).items():
        if not _laid_over(overlay, path):
            assert _at(merged, path) == value, path
    kept = {path for path in _leaves(base) if not _laid_over(overlay, path)}
    assert set(_leaves(merged)) <= kept | set(_leaves(overlay))
    assert config.merge(base, {}) == base and config.merge({}, overlay) == overlay
    assert config.merge(merged, overlay) == merged


def _reads_as_itself(text: str) -> bool:
    """Whether YAML reads ``text`` as that string, and Python does not call it blank (no value)."""
    try:
        return yaml.safe_load(text) == text and bool(text.strip())
    except yaml.YAMLError:
        return False


DOTTED = st.lists(KEYS, min_size=1, max_size=3).map(".".join)


@OVERLAY_SETTINGS
@given(key=DOTTED, value=VALUES)
def test_a_set_option_reads_back_any_value(key, value):
    """``--set KEY=VALUE`` as the stage commands write it (format_override) parses back to the
    same key and value (parse_sets), for any value YAML carries."""
    item = overrides.format_override(key, value)
    assert overrides.parse_sets([item]) == {key: value}
    assert overrides.parse_sets([item, overrides.format_override(f"{key}.x", 1)]) == {key: value, f"{key}.x": 1}


@pytest.mark.parametrize("value", [1e-05, "@home/images", ["\U0001F60D"], "\xa0"],
                         ids=["exponent", "yaml-indicator", "astral", "unicode-space"])
def test_a_set_option_reads_back_the_hard_cases(value):
    """A float with an exponent (YAML 1.1 reads 1e-05 as a string), a string YAML cannot read bare,
    a character beyond U+FFFF inside a list, a string of only Unicode spaces."""
    assert overrides.parse_sets([overrides.format_override("seed_cnn.x", value)]) == {"seed_cnn.x": value}


RAW_PARAMS = config.read_raw(ROOT / "params.yaml")
# every value params.yaml states in a section, and keys it leaves to their defaults
CONFIG_PATHS = sorted(path for path in _leaves(RAW_PARAMS) if len(path) > 1) + [
    ("seed_cnn", "batch_size"), ("data", "imagenet200", "n_classes"), ("alexnet32", "weight_decay")]


@OVERLAY_SETTINGS
@given(path=st.sampled_from(CONFIG_PATHS), value=st.none() | st.booleans() | st.integers()
       | st.floats(allow_nan=False, allow_infinity=False) | TEXT | st.lists(st.integers() | TEXT, max_size=3))
def test_a_snakemake_config_entry_reads_back_its_value(path, value):
    """``snakemake --config 'section={key: value}'``, parsed by Snakemake (every scalar a string)
    and laid over params.yaml, gives back ``{"section.key": value}`` (nothing where params.yaml
    already has the value): typed as YAML where params.yaml's value is not a string, kept as
    written where it is."""
    from snakemake.cli import parse_config
    from snakemake.utils import update_config

    stated = path in _leaves(RAW_PARAMS)
    current = _at(RAW_PARAMS, path) if stated else None
    if isinstance(current, str):
        assume(isinstance(value, str))
    else:  # a string reads as YAML there: only one that YAML reads as itself comes back as given
        for text in value if isinstance(value, list) else [value]:
            assume(not isinstance(text, str) or _reads_as_itself(text))
    nested = value
    for key in reversed(path[1:]):
        nested = {key: nested}
    entry = f"{path[0]}={yaml.safe_dump(nested, default_flow_style=True, width=float('inf')).strip()}"
    snakemake_config = copy.deepcopy(RAW_PARAMS)
    update_config(snakemake_config, parse_config([entry]))
    expected = {} if stated and value == current else {".".join(path): value}
    assert overrides.config_overrides(snakemake_config, RAW_PARAMS) == expected, entry


PROFILE_KNOBS = {
    "seed_cnn.epochs": st.integers(1, 50),
    "seed_cnn.seeds": st.lists(st.integers(0, 99), min_size=1, max_size=3, unique=True),
    "seed_cnn.optimizer": st.sampled_from(["adam", "sgd", "rmsprop"]),
    "alexnet32.learning_rate": st.floats(1e-6, 1.0),
    "alexnet32.train_subset": st.none() | st.integers(200, 1500) | st.floats(0.05, 0.95),
    "autokeras.max_trials": st.integers(1, 5),
    "densenet121.run_eagerly": st.booleans(),
    "seed_cnn_hwc.batch_size": st.integers(1, 256),
    "cifar_base_cnn.augment_flip": st.booleans(),
    "data.imagenet200.n_classes": st.integers(2, 200),
    "data.cifar10.source": st.sampled_from(["cifar10", "sample_cifar10"]),
    "data.image_size": st.sampled_from([16, 64]),  # a key params.yaml does not state: added after data's sections
}


@st.composite
def profile_overlays(draw):
    """A profile: some of PROFILE_KNOBS, each with a valid value, as config/<name>.yaml nests them."""
    chosen = draw(st.lists(st.sampled_from(sorted(PROFILE_KNOBS)), unique=True, max_size=len(PROFILE_KNOBS)))
    overlay = {}
    for key in chosen:
        put(overlay, key, draw(PROFILE_KNOBS[key]))
    return overlay


def _anchors(text: str) -> list[tuple[str, str]]:
    """Each comment or blank line, with the key of the first line after it that is neither."""
    lines = [line.strip() for line in text.splitlines()]
    return [(line, next((after.split(":")[0] for after in lines[number + 1:] if after and not after.startswith("#")), ""))
            for number, line in enumerate(lines) if not line or line.startswith("#")]


@settings(OVERLAY_SETTINGS, max_examples=15)
@given(overlay=profile_overlays())
def test_a_profile_reads_back_over_params_yaml(overlay):
    """``imgclf params --profile`` (apply_profile): the written params.yaml reads back as
    params.yaml with each of the profile's values set and every other value as it was, keeps
    params.yaml's comments and blank lines before the keys they stood before, and is validated;
    laying the profile again writes the same bytes, and an empty profile gives params.yaml itself
    under its one-line note."""
    base_text = (ROOT / "params.yaml").read_text()
    expected = copy.deepcopy(RAW_PARAMS)
    for path, value in _leaves(overlay).items():
        put(expected, ".".join(path), value)
    with tempfile.TemporaryDirectory() as tmp:
        params_path, profile = Path(tmp, "params.yaml"), Path(tmp, "profile.yaml")
        params_path.write_text(base_text)
        write_params(profile, overlay)
        note = f"# {profile} laid over this file (`imgclf params --profile {profile}`)\n"
        text, params = config.apply_profile(params_path, str(profile))
        assert yaml.safe_load(text) == expected
        assert params == config.validate(expected)
        assert text.startswith(note)
        assert _anchors(text)[1:] == _anchors(base_text)  # comments and blank lines before the same keys
        params_path.write_text(text)
        assert config.apply_profile(params_path, str(profile))[0] == text
        params_path.write_text(base_text)
        profile.write_text("{}\n")
        assert config.apply_profile(params_path, str(profile))[0] == note + base_text


def test_a_profile_lays_a_small_float_as_a_float(tmp_path):
    """ruamel writes 1e-05, which YAML 1.1 readers take for a string: the overlay writes 1.0e-05."""
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (tmp_path / "lr.yaml").write_text("alexnet32: {learning_rate: 0.00001}\n")
    text, _ = config.apply_profile(tmp_path / "params.yaml", str(tmp_path / "lr.yaml"))
    assert yaml.safe_load(text)["alexnet32"]["learning_rate"] == 1e-05


def test_a_new_data_key_keeps_the_comments_that_open_the_experiments(tmp_path):
    """A key added to ``data`` after its last section (cifar10, a nested mapping) goes above the
    comments that open the experiments, not below them."""
    base_text = (ROOT / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(base_text)
    (tmp_path / "size.yaml").write_text("data: {image_size: 64}\n")
    text, _ = config.apply_profile(tmp_path / "params.yaml", str(tmp_path / "size.yaml"))
    assert _anchors(text)[1:] == _anchors(base_text)
