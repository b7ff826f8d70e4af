"""Which images go where, pinned: the draws for a seed (a change would silently change every
result that uses them), the small-class fallback, and the one-line errors. The properties over
generated inputs are in test_properties.py."""

from pathlib import Path

import numpy as np
import pytest

from imgclf import splits
from imgclf.errors import PipelineError


def _labels():
    labels = np.repeat(np.arange(5), 7)
    np.random.default_rng(0).shuffle(labels)
    return labels


@pytest.mark.parametrize("size, expected", [
    (5, [4, 8, 12, 17, 31]),  # one per class
    (12, [0, 5, 7, 12, 14, 15, 18, 25, 26, 31, 33, 34]),  # scikit-learn's stratified draw
    (31, [0, 1, 2, 3, 4, 5, 7, 9, 10, 12, 13, 14, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
          32, 33, 34]),
    (30, [0, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 25, 26, 28, 29, 30, 31, 32,
          34]),  # five left out of five classes: scikit-learn's draw
    (33, [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
          31, 32, 33, 34]),  # two left out: one image from each of the two largest classes
])
def test_subset_draws_are_pinned(size, expected):
    chosen, labels = splits.subset(np.arange(35), _labels(), size, 3, "x.train_subset")
    assert chosen.tolist() == expected and np.array_equal(labels, _labels()[chosen])


@pytest.mark.parametrize("sizes, size, counts", [
    ([2, 3, 30], 4, [1, 1, 2]), ([2, 3, 30], 7, [1, 1, 5]),
    ([2, 2, 9, 21], 9, [1, 1, 2, 5]), ([2, 13, 23, 31], 17, [1, 3, 6, 7]),
])
def test_small_classes_keep_one_image_and_the_rest_goes_by_size(sizes, size, counts):
    """Where scikit-learn's proportional draw would give a small class no image, each class keeps
    one, and what is left is shared in proportion to what each class has beyond that one (largest
    remainders first)."""
    labels = np.repeat(np.arange(len(sizes)), sizes)
    chosen = splits._subset_indices(labels, size, 0)
    assert np.bincount(labels[chosen]).tolist() == counts and len(set(chosen.tolist())) == size


def test_near_the_full_size_the_largest_classes_give_one_image_each():
    labels = np.repeat(np.arange(3), [3, 5, 8])
    assert np.bincount(labels[splits._subset_indices(labels, 14, 0)]).tolist() == [3, 4, 7]


def test_single_image_classes_are_kept():
    labels = np.array([0, 1, 1, 1, 2, 2])
    assert splits._subset_indices(labels, 3, 0).tolist() == [0, 1, 5]
    assert splits._subset_indices(np.array([1, 1, 1, 1, 1, 0, 0, 1]), 2, 1).tolist() == [3, 5]
    assert splits._subset_indices(np.array([0, 1, 2]), 3, 0).tolist() == [0, 1, 2]


def test_subset_errors_name_the_param():
    labels = _labels()
    with pytest.raises(PipelineError, match=r"^x.train_subset: 36 requested but the split has 35 images$"):
        splits.subset(np.arange(35), labels, 36, 0, "x.train_subset")
    with pytest.raises(PipelineError, match=r"^x.val_subset: 4 is fewer than the 5 classes$"):
        splits.subset(np.arange(35), labels, 4, 0, "x.val_subset")
    for size in (35, None):  # all of them, in their stored order
        images, kept = splits.subset(np.arange(35), labels, size, 0, "x")
        assert np.array_equal(images, np.arange(35)) and np.array_equal(kept, labels), size


def test_class_selection_and_split_are_pinned():
    available = [f"n{i:02d}" for i in range(20)]
    assert splits.select_classes(available, 4, "seeded", 7, []) == ["n11", "n12", "n16", "n17"]
    kept, held = splits.stratified_split(np.repeat(np.arange(3), 5), 0.2, 1)
    assert held.tolist() == [3, 6, 10] and kept.tolist() == [0, 1, 2, 4, 5, 7, 8, 9, 11, 12, 13, 14]
    with pytest.raises(PipelineError, match=r"^data.imagenet200.wnids: not in the source: a, b, c, d, e$"):
        splits.select_classes(available, 6, "list", 0, ["f", "e", "d", "c", "b", "a"])


def test_carve_and_its_check():
    labels = np.repeat(np.arange(3), [10, 4, 10])
    splits.check_carve(labels, 0.25, "train/")  # 4 x 0.25 = 1: exactly one held-out image is enough
    with pytest.raises(PipelineError, match=r"^data.val_fraction: 0.2 leaves class 1 of train/ \(4 images\) with no held-out image$"):
        splits.check_carve(labels, 0.2, "train/")
    images = np.arange(24) * 10
    (kept_images, kept_labels), (held_images, held_labels) = splits.carve(images, labels, 0.25, 2)
    kept, held = splits.stratified_split(labels, 0.25, 2)
    assert np.array_equal(kept_images, images[kept]) and np.array_equal(held_labels, labels[held])
    assert np.array_equal(held_images, images[held]) and np.array_equal(kept_labels, labels[kept])
    assert not np.array_equal(held, splits.stratified_split(labels, 0.25, 3)[1])  # the seed is used


def test_a_fraction_is_the_same_draw_as_its_count():
    """``train_subset: 0.35`` of 35 images is the draw of 12 (0.35 x 35 = 12.25, rounded): one
    params file fits data of any size; a fraction too small for the classes fails naming it."""
    labels = _labels()
    by_fraction = splits.subset(np.arange(35), labels, 0.35, 3, "x.train_subset")[0]
    assert by_fraction.tolist() == splits.subset(np.arange(35), labels, 12, 3, "x.train_subset")[0].tolist()
    assert splits.subset_size(0.5, 35) == 18 and splits.subset_size(0.5, 33) == 16  # half to even
    assert splits.subset_size(20, 35) == 20 and splits.subset_size(None, 35) is None
    with pytest.raises(PipelineError, match=r"^x.val_subset: 0.1 of 35 images, 4, is fewer than the 5 classes$"):
        splits.subset(np.arange(35), labels, 0.1, 0, "x.val_subset")


@pytest.mark.parametrize("value, ok", [(0.25, True), (1500, True), (None, True), (0.0, False), (1.5, False), (5, False)])
def test_subset_params_take_counts_or_fractions(value, ok):
    from imgclf import config

    params = config.read_raw(Path(__file__).resolve().parents[1] / "params.yaml")
    params["seed_cnn"]["train_subset"] = value
    if ok:
        assert config.validate(params)["seed_cnn"]["train_subset"] == value
    else:
        with pytest.raises(PipelineError, match=r"seed_cnn.train_subset: "):
            config.validate(params)
