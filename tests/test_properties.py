"""Properties of the pure cores that decide numbers, over generated inputs (Hypothesis): the
stratified split and the training subsets keep every class and never overlap, top-k accuracy is
monotone in k, and the report's mean ± std and flags behave for any metrics."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgclf import evaluate, report, splits

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
    if held_total < len(counts) or len(labels) - held_total < len(counts):
        return  # scikit-learn needs a stratum per class on each side
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
    chance flag; a better train top-1 never loses it."""
    chance = 1 / classes
    base = _flag_names(top1, train_top1, share, chance)
    assert ("collapsed" in base) <= ("collapsed" in _flag_names(top1, train_top1, min(1, share + more), chance))
    assert ("chance on test" in _flag_names(min(1, top1 + more), train_top1, share, chance)) <= ("chance on test" in base)
    assert ("chance on test" in base) <= ("chance on test" in _flag_names(top1, min(1, train_top1 + more), share, chance))
    assert "collapsed" not in _flag_names(top1, train_top1, min(share, 0.49), chance)  # under half: never
    assert "chance on test" not in _flag_names(max(top1, 2.01 * chance), train_top1, share, chance)


@SETTINGS
@given(top1=st.floats(0, 1), train_top1=st.floats(0, 1), share=st.floats(0, 1))
def test_flags_at_200_classes_follow_the_documented_rule(top1, train_top1, share):
    """README: collapsed at >= 50 % of predictions on one class; chance on test at <= 2x chance
    while train top-1 is >= 10x chance."""
    names = _flag_names(top1, train_top1, share, 1 / 200)
    assert ("collapsed" in names) == (share >= 0.5)
    assert ("chance on test" in names) == (top1 <= 0.01 and train_top1 >= 0.05)
