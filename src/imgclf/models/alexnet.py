"""Experiment 3: AlexNet adapted to 32x32 inputs: 5 convolutional and 3 fully connected layers,
about 0.8 M parameters (the paper's figure): smaller kernels and strides, fewer filters."""

import keras

from imgclf.models import register_model
from imgclf.models.layers import softmax_head, unit_scale


def _conv(x, filters: int, kernel: int, name: str, pool: bool):
    x = keras.layers.Conv2D(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)  # in place of AlexNet's LRN
    x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return keras.layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool")(x) if pool else x


@register_model
def alexnet32(input_shape, num_classes, **options):
    inputs = keras.Input(input_shape)
    x = unit_scale(inputs)
    x = _conv(x, 48, 5, "conv1", pool=True)  # 16x16
    x = _conv(x, 96, 5, "conv2", pool=True)  # 8x8
    x = _conv(x, 128, 3, "conv3", pool=False)
    x = _conv(x, 128, 3, "conv4", pool=False)
    x = _conv(x, 64, 3, "conv5", pool=True)  # 4x4
    x = keras.layers.Flatten(name="flatten")(x)
    for i in (1, 2):
        x = keras.layers.Dropout(0.5, name=f"drop{i}")(x)
        x = keras.layers.Dense(256, activation="relu", name=f"fc{i}")(x)
    return keras.Model(inputs, softmax_head(x, num_classes), name="alexnet32")
