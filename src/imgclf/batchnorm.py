"""BatchNorm statistics recomputed for a model's trained weights, the last step of the train stage
where params ask for it (``bn_recalibration``)."""

from __future__ import annotations

from imgclf.errors import PipelineError
from imgclf.seeding import stream_seed


def recalibrate_batchnorm(model, images, batch_size: int, seed: int, eager: bool = False) -> int:
    """Set every trainable BatchNorm layer's moving mean and variance to their average over the
    training images, weights untouched (``torch.optim.swa_utils.update_bn``'s cumulative
    average). After short training, momentum-0.99 moving statistics still lag the weights, and
    the model scores near chance in inference mode while it has learned. Dropout is off during
    the pass, as at inference. ``eager`` calls the model batch by batch instead of tracing a graph
    (as ``run_eagerly`` does for training). Returns the number of layers recalibrated."""
    import keras
    import numpy as np
    import tensorflow as tf

    layers = [layer for layer in model._flatten_layers(include_self=False)
              if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    if not layers:
        return 0
    dropouts = [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, keras.layers.Dropout)]
    saved = ([layer.momentum for layer in layers], [layer.rate for layer in dropouts])
    for layer in layers:
        layer.momentum = 0.0  # each batch's statistics land in the moving variables as they are
    for layer in dropouts:
        layer.rate = 0.0
    def forward(x):
        return model(x, training=True)

    step = forward if eager else tf.function(forward, reduce_retracing=True)
    order = np.random.default_rng(stream_seed(seed, "batchnorm")).permutation(len(images))
    sums = [[np.zeros(layer.moving_mean.shape, np.float64), np.zeros(layer.moving_variance.shape, np.float64)]
            for layer in layers]
    batches = 0
    try:
        for start in range(0, len(images), batch_size):
            chosen = order[start : start + batch_size]
            if len(chosen) < 2:  # one image has no variance
                continue
            step(tf.constant(images[chosen], tf.float32))
            for total, layer in zip(sums, layers):
                total[0] += layer.moving_mean.numpy()
                total[1] += layer.moving_variance.numpy()
            batches += 1
    finally:
        for layer, momentum in zip(layers, saved[0]):
            layer.momentum = momentum
        for layer, rate in zip(dropouts, saved[1]):
            layer.rate = rate
    if batches == 0:
        raise PipelineError("BatchNorm recalibration needs at least 2 training images")
    for (mean, variance), layer in zip(sums, layers):
        layer.moving_mean.assign((mean / batches).astype(np.float32))
        layer.moving_variance.assign((variance / batches).astype(np.float32))
    return len(layers)
