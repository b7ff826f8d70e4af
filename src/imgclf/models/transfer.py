"""Experiments 5 and 6: DenseNet-201 features transferred to CIFAR-10, then fine-tuned.

``transfer_model`` puts a new softmax head on a frozen DenseNet-201 backbone whose weights are
ImageNet's (Keras' download, or a local weights file) or the pipeline's own DenseNet-201 from
experiment 4. ``unfreeze`` opens the top of the backbone for fine-tuning and keeps every
BatchNormalization layer frozen (in inference mode), as Keras' transfer-learning guide advises."""

from pathlib import Path

import keras

from imgclf.errors import PipelineError
from imgclf.models.layers import imagenet_normalize, softmax_head

BACKBONE = "densenet201"


def _backbone(input_shape, weights: str, upstream_dir: Path | None) -> keras.Model:
    if weights == "pipeline":
        if upstream_dir is None:
            raise PipelineError("weights 'pipeline' needs the densenet201 model directory (--upstream)")
        base = keras.models.load_model(Path(upstream_dir) / "model.keras", compile=False).get_layer(BACKBONE)
        if tuple(base.input.shape[1:]) != tuple(input_shape):
            raise PipelineError(f"{upstream_dir}: backbone input {tuple(base.input.shape[1:])} != CIFAR-10 images "
                                f"{tuple(input_shape)}")
        return base
    source = "imagenet" if weights == "imagenet" else Path(weights)
    if source != "imagenet" and not source.exists():
        raise PipelineError(f"weights: {weights}: no such weights file")
    try:
        return keras.applications.DenseNet201(include_top=False, weights=str(source), input_shape=input_shape,
                                              pooling="avg")
    except Exception as exc:  # download or file errors surface as many types
        raise PipelineError(f"weights: cannot load DenseNet-201 weights {weights!r} ({str(exc).splitlines()[0]})") from None


def transfer_model(input_shape, num_classes: int, weights: str, upstream_dir: Path | None = None) -> keras.Model:
    base = _backbone(input_shape, weights, upstream_dir)
    base.trainable = False
    inputs = keras.Input(input_shape)
    features = base(imagenet_normalize(inputs), training=False)  # BatchNorm in inference mode
    features = keras.layers.Dropout(0.2, name="head_dropout")(features)
    return keras.Model(inputs, softmax_head(features, num_classes), name="densenet201_transfer")


def unfreeze(backbone: keras.Model, prefix: str) -> None:
    """Make layers from the first named ``prefix*`` on trainable, BatchNorm excepted."""
    start = next((i for i, layer in enumerate(backbone.layers) if layer.name.startswith(prefix)), None)
    if start is None:
        raise PipelineError(f"unfreeze_from: no layer of {backbone.name} starts with {prefix!r}")
    backbone.trainable = True
    for index, layer in enumerate(backbone.layers):
        layer.trainable = index >= start and not isinstance(layer, keras.layers.BatchNormalization)


def finetune_model(transfer_path: Path, prefix: str) -> keras.Model:
    model = keras.models.load_model(transfer_path, compile=False)
    unfreeze(model.get_layer(BACKBONE), prefix)
    return model


def trainable_count(model: keras.Model) -> int:
    return int(sum(int(w.numpy().size) for w in model.trainable_weights))
