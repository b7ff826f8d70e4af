"""Training internals that need no pipeline: fine-tuning really updates the opened layers (and
only those), and each fold starts from the transfer model again."""

import json

import numpy as np
import pytest

from imgclf import data, experiments
from imgclf.models import transfer
from test_models import _local_weights


@pytest.fixture
def tiny_splits():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 32, 32, 3)).astype(np.uint8)
    y = np.arange(40) % 10
    return data.Splits(x, y, x[:20], y[:20], 10, (32, 32, 3))


def test_finetune_updates_top_layers_and_keeps_batchnorm(tmp_path, tiny_splits):
    from imgclf import train

    source = transfer.transfer_model((32, 32, 3), 10, weights=_local_weights())
    (tmp_path / "up").mkdir()
    source.save(tmp_path / "up" / "model.keras")
    section = {
        **{key: default for key, (_, default, _) in experiments.COMMON.items()},
        "epochs": 1, "batch_size": 20, "learning_rate": 0.01, "lr_factor": 0.1, "kfold": 2,
        "unfreeze_from": "conv5_block32_", "run_eagerly": True,
    }
    runtime = {"xla": False}
    work = tmp_path / "work"
    work.mkdir()
    model, rows, extra, _ = train.train_finetune(None, section, tiny_splits, runtime, work, tmp_path / "up")
    before = {w.path: w.numpy() for w in source.weights}
    after = {w.path: w.numpy() for w in model.weights}
    changed = {path for path in before if not np.array_equal(before[path], after[path])}
    assert any("conv5_block32_2_conv" in path for path in changed)
    assert not any("conv4_" in path for path in changed)
    assert not any("_bn/" in path for path in changed)  # BatchNorm stays frozen, statistics included
    assert extra["cv_folds"] == 2 and extra["learning_rate_effective"] == pytest.approx(0.001)
    assert len(rows) == 1
    folds = [json.loads((work / f"fold{i}.json").read_text())["val_accuracy"] for i in (1, 2)]
    assert extra["cv_top1_folds"] == folds


def test_augmentation_is_reproducible_varies_by_epoch_and_seed():
    """Flip and crop run in a parallel tf.data map: keyed stateless ops make every run see the
    same augmented batches (stateful random ops there gave cifar_base_cnn different numbers on
    each rerun), while each epoch and each seed still augments differently."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (300, 32, 32, 3)).astype(np.uint8)
    y = np.arange(300) % 10

    def two_epochs(seed, global_seed):
        tf.keras.utils.set_random_seed(global_seed)
        ds = data.dataset(x, y, 32, True, seed, flip=True, crop=4)
        return [(np.concatenate([b[0].numpy() for b in ds]), np.concatenate([b[1].numpy() for b in ds]))
                for _ in range(2)]

    first, again, other_seed = two_epochs(0, 0), two_epochs(0, 0), two_epochs(1, 0)
    for (xa, ya), (xb, yb) in zip(first, again):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    assert not np.array_equal(first[0][0], first[1][0])
    assert not np.array_equal(first[0][0], other_seed[0][0])
    # augmented, not just shuffled: some images differ from every original image
    originals = {image.tobytes() for image in x.astype(np.float32)}
    assert sum(image.tobytes() not in originals for image in first[0][0]) > 100
