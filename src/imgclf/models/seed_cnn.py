"""Experiment 1: the paper's custom CNN with large kernels, and a corrected variant."""

import keras

from imgclf.models import register_model
from imgclf.models.layers import softmax_head, unit_scale


def _seed_cnn(input_shape, num_classes: int, chw_as_hwc: bool, name: str) -> keras.Model:
    inputs = keras.Input(input_shape)
    x = unit_scale(inputs)
    if chw_as_hwc:
        # the paper's summary: images laid out (3, 32, 32) but read channels-last, so the first
        # 5x5 convolution slides over a 3x32 "image" with 32 channels (795,000 parameters)
        x = keras.layers.Permute((3, 1, 2), name="to_chw")(x)
    x = keras.layers.Conv2D(16, 5, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.Dropout(0.25, name="drop1")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.MaxPooling2D(3, name="pool")(x)
    x = keras.layers.Conv2D(64, 4, padding="same", activation="relu", name="conv4")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.5, name="drop2")(x)
    x = keras.layers.Dense(512, activation="relu", name="fc1")(x)
    x = keras.layers.Dense(512, activation="relu", name="fc2")(x)
    x = keras.layers.Dropout(0.5, name="drop3")(x)
    return keras.Model(inputs, softmax_head(x, num_classes), name=name)


@register_model
def seed_cnn(input_shape, num_classes, **options):
    return _seed_cnn(input_shape, num_classes, chw_as_hwc=True, name="seed_cnn")


@register_model
def seed_cnn_hwc(input_shape, num_classes, **options):
    return _seed_cnn(input_shape, num_classes, chw_as_hwc=False, name="seed_cnn_hwc")
