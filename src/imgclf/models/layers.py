"""Shared pieces of the model builders: in-model preprocessing and the classification head."""

import keras

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def unit_scale(x):
    return keras.layers.Rescaling(1.0 / 255, name="rescale")(x)


def imagenet_normalize(x):
    """What ``keras.applications.densenet.preprocess_input`` does ('torch' mode), as a layer."""
    mean, variance = [255 * m for m in IMAGENET_MEAN], [(255 * s) ** 2 for s in IMAGENET_STD]
    return keras.layers.Normalization(mean=mean, variance=variance, name="imagenet_norm")(x)


def softmax_head(x, num_classes: int):
    # float32 output even under a mixed_float16 policy, so the loss stays numerically stable
    return keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
