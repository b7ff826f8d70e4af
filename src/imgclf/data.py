"""Training input: prepared arrays -> ``tf.data`` (shuffle, optional flip/crop, batch, prefetch)."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgclf import arrays
from imgclf.errors import PipelineError
from imgclf.seeding import stream_seed
from imgclf.splits import subset


@dataclass
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int
    image_shape: tuple[int, int, int]


def num_classes(data_dir: str | Path) -> int:
    meta = Path(data_dir) / "meta.json"
    try:
        return int(json.loads(meta.read_text())["n_classes"])
    except FileNotFoundError:
        raise PipelineError(f"{meta}: not found (run the prepare stage)") from None


def training_split(data_dir: str | Path, section: dict, seed: int, where: str):
    """The training images a run of ``seed`` trains on (``train_subset`` of them, or all)."""
    x_train, y_train = arrays.load_split(Path(data_dir) / "train.npz")
    return subset(x_train, y_train, section["train_subset"], seed, f"{where}.train_subset")


def load_training(data_dir: str | Path, section: dict, seed: int, where: str) -> Splits:
    x_train, y_train = training_split(data_dir, section, seed, where)
    x_val, y_val = arrays.load_split(Path(data_dir) / "val.npz")
    x_val, y_val = subset(x_val, y_val, section["val_subset"], seed, f"{where}.val_subset")
    return Splits(x_train, y_train, x_val, y_val, num_classes(data_dir), tuple(x_train.shape[1:]))


def dataset(images, labels, batch_size: int, key: tuple | None = None, flip: bool = False, crop: int = 0):
    """Batches of float32 images. With a ``key`` (training: run seed, fold, epoch) the order is a
    permutation drawn from that key, and flips and crops are keyed per batch from it too; without
    one (validation, evaluation), the stored order and no augmentation. Each batch is gathered from
    ``images`` by its indices, so an epoch holds no shuffled copy of the split: pass the images as a
    ``tf.Tensor`` to share one copy between epochs."""
    import tensorflow as tf
    if key is None:
        ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)
    else:
        images, labels = tf.convert_to_tensor(images), tf.convert_to_tensor(labels)
        order = np.random.default_rng(stream_seed(*key, "order")).permutation(len(labels))
        ds = tf.data.Dataset.from_tensor_slices(order).batch(batch_size).map(
            lambda index: (tf.gather(images, index), tf.gather(labels, index)))

    def augment(batch, key):
        # stateless ops keyed per batch by a seeded random stream that differs each epoch: the
        # same augmentation on every run, whatever order the parallel map finishes batches in
        x, y = batch
        x = tf.cast(x, tf.float32)
        if flip:
            x = tf.image.stateless_random_flip_left_right(x, seed=key[0])
        if crop:
            height, width = x.shape[1], x.shape[2]
            x = tf.pad(x, [[0, 0], [crop, crop], [crop, crop], [0, 0]], mode="REFLECT")
            x = tf.image.stateless_random_crop(x, tf.stack([tf.shape(x)[0], height, width, 3]), seed=key[1])
        return x, y

    if key is not None and (flip or crop):
        batches = -(-len(labels) // batch_size)
        draws = np.random.default_rng(stream_seed(*key, "augment")).integers(0, 2**31 - 1, (batches, 2, 2), dtype=np.int64)
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(draws))).map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
