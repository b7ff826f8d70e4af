"""Experiment 5's baseline: a VGG-style CNN trained from scratch on CIFAR-10 (paper: 82%)."""

import keras

from imgclf.models import register_model
from imgclf.models.layers import softmax_head, unit_scale


@register_model
def cifar_cnn(input_shape, num_classes, **options):
    inputs = keras.Input(input_shape)
    x = unit_scale(inputs)
    for stage, filters in enumerate((32, 64, 128), 1):
        for i in (1, 2):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{stage}_conv{i}")(x)
            x = keras.layers.BatchNormalization(name=f"block{stage}_bn{i}")(x)
            x = keras.layers.ReLU(name=f"block{stage}_relu{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{stage}_pool")(x)
        x = keras.layers.Dropout(0.1 * stage, name=f"block{stage}_drop")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(128, activation="relu", name="fc")(x)
    x = keras.layers.Dropout(0.3, name="fc_drop")(x)
    return keras.Model(inputs, softmax_head(x, num_classes), name="cifar_cnn")
