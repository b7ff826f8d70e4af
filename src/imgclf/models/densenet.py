"""Experiment 4: DenseNet-121/169/201, built by ``_densenet`` with keras.applications' layers
and layer names (the same architecture and parameters: tests/test_models.py compares outputs),
and DenseNet-161, which keras.applications lacks (growth 48, blocks 6-12-36-24, 96-channel
stem). keras.applications builds only the pretrained backbones (``models.transfer``): its BatchNorm
layers normalise ``axis=3``, which Keras' TensorFlow backend implements with four reshapes per
layer (and four more in the gradient); ours normalise the last axis, the same numbers in a graph
about 1,000 ops smaller for DenseNet-121 (its first training step traces 3-5 s faster on 2 CPU
cores: ``bench/bench_train.py``). ``stem='small'`` swaps the ImageNet stem (7x7/2 conv + 3x3/2 pool, which
leaves a 1x1 map at 32x32) for a 3x3/1 conv with no pooling.

The backbone is a nested model named ``densenet<depth>`` so transfer learning can lift it out."""

import keras

from imgclf.models import register_model
from imgclf.models.layers import imagenet_normalize, softmax_head

BN_EPS = 1.001e-5
BN_AXIS = -1  # channels last; see the module docstring
# depth: (blocks, growth rate, stem filters)
CONFIGS = {
    121: ((6, 12, 24, 16), 32, 64),
    169: ((6, 12, 32, 32), 32, 64),
    201: ((6, 12, 48, 32), 32, 64),
    161: ((6, 12, 36, 24), 48, 96),
}


def _bn_relu(x, name: str):
    x = keras.layers.BatchNormalization(axis=BN_AXIS, epsilon=BN_EPS, name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def _conv_block(x, growth: int, name: str):
    y = _bn_relu(x, f"{name}_0")
    y = keras.layers.Conv2D(4 * growth, 1, use_bias=False, name=f"{name}_1_conv")(y)
    y = _bn_relu(y, f"{name}_1")
    y = keras.layers.Conv2D(growth, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(y)
    return keras.layers.Concatenate(axis=3, name=f"{name}_concat")([x, y])


def _transition(x, name: str):
    x = _bn_relu(x, name)
    x = keras.layers.Conv2D(x.shape[-1] // 2, 1, use_bias=False, name=f"{name}_conv")(x)
    return keras.layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def _densenet(input_shape, blocks, growth: int, stem_filters: int, stem: str, name: str) -> keras.Model:
    """A DenseNet backbone (no top, global average pooling) with Keras' layer names."""
    inputs = keras.Input(input_shape)
    if stem == "imagenet":
        x = keras.layers.ZeroPadding2D(3, name="zero_padding2d")(inputs)
        x = keras.layers.Conv2D(stem_filters, 7, strides=2, use_bias=False, name="conv1_conv")(x)
        x = _bn_relu(x, "conv1")
        x = keras.layers.ZeroPadding2D(1, name="zero_padding2d_1")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    elif stem == "small":
        x = keras.layers.Conv2D(stem_filters, 3, padding="same", use_bias=False, name="conv1_conv")(inputs)
        x = _bn_relu(x, "conv1")
    else:
        raise ValueError(f"stem must be 'imagenet' or 'small', got {stem!r}")
    for index, count in enumerate(blocks):
        for i in range(count):
            x = _conv_block(x, growth, f"conv{index + 2}_block{i + 1}")
        if index < len(blocks) - 1:
            x = _transition(x, f"pool{index + 2}")
    x = keras.layers.BatchNormalization(axis=BN_AXIS, epsilon=BN_EPS, name="bn")(x)
    x = keras.layers.Activation("relu", name="relu")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="avg_pool")(x), name=name)


def backbone(depth: int, input_shape, stem: str = "imagenet") -> keras.Model:
    return _densenet(input_shape, *CONFIGS[depth], stem, f"densenet{depth}")


def _classifier(depth: int, input_shape, num_classes: int, stem: str = "imagenet", **options) -> keras.Model:
    inputs = keras.Input(input_shape)
    features = backbone(depth, input_shape, stem)(imagenet_normalize(inputs))
    return keras.Model(inputs, softmax_head(features, num_classes), name=f"densenet{depth}_classifier")


@register_model
def densenet121(input_shape, num_classes, **options):
    return _classifier(121, input_shape, num_classes, **options)


@register_model
def densenet169(input_shape, num_classes, **options):
    return _classifier(169, input_shape, num_classes, **options)


@register_model
def densenet201(input_shape, num_classes, **options):
    return _classifier(201, input_shape, num_classes, **options)


@register_model
def densenet161(input_shape, num_classes, **options):
    return _classifier(161, input_shape, num_classes, **options)
