"""BatchNorm statistics recomputed for a model's trained weights where params ask for it
(``bn_recalibration``): the last step of the train stage, and before each epoch's validation pass
(``imgclf.resume.fit``)."""

from contextlib import contextmanager

import numpy as np

from imgclf.errors import PipelineError
from imgclf.seeding import stream_seed

# the statistics of 156 batches of 64 are as good as of all 90,000 training images of Tiny ImageNet,
# whose full pass takes a DenseNet-121 minutes on a CPU (bench/bench_paper_scale.py)
CALIBRATION_IMAGES = 10_000


class Recalibration:
    """Sets every trainable BatchNorm layer's moving mean and variance to their average over
    ``images``, weights untouched (``torch.optim.swa_utils.update_bn``'s cumulative average).
    After short training, momentum-0.99 moving statistics still lag the weights, and the model
    scores near chance in inference mode while it has learned. Dropout is off during the pass, as
    at inference. The images go in batches of ``batch_size`` in an order drawn from ``seed`` (the
    first ``limit`` images of that order, where given). ``eager`` calls the model batch by batch
    (as ``run_eagerly`` does for training); otherwise one traced forward pass serves every call."""

    def __init__(self, model, images, batch_size: int, seed: int, eager: bool = False, limit: int | None = None):
        import keras
        import tensorflow as tf
        self.model, self.images = model, images
        self.layers = [layer for layer in model._flatten_layers(include_self=False)
                       if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
        self.statistics = [variable for layer in self.layers for variable in (layer.moving_mean, layer.moving_variance)]
        self.dropouts = [layer for layer in model._flatten_layers(include_self=False)
                         if isinstance(layer, keras.layers.Dropout)]
        order = np.random.default_rng(stream_seed(seed, "batchnorm")).permutation(len(images))[:limit]
        batches = (order[start : start + batch_size] for start in range(0, len(order), batch_size))
        self.batches = [chosen for chosen in batches if len(chosen) >= 2]  # one image has no variance

        def forward(x):
            return model(x, training=True)

        # traced once on TensorFlow; on JAX the layers' state updates need the eager call
        self.forward = forward if eager or keras.backend.backend() != "tensorflow" else \
            tf.function(forward, reduce_retracing=True)

    def __call__(self) -> int:
        """Recalibrate; the number of layers recalibrated."""
        import keras
        if not self.layers:
            return 0
        if not self.batches:
            raise PipelineError("BatchNorm recalibration needs at least 2 training images")
        # momentum 0: each batch's statistics land in the moving variables as they are; rate 0: no dropout
        switched = [(layer, "momentum") for layer in self.layers] + [(layer, "rate") for layer in self.dropouts]
        saved = [getattr(layer, attribute) for layer, attribute in switched]
        for layer, attribute in switched:
            setattr(layer, attribute, 0.0)
        sums = [np.zeros(variable.shape, np.float64) for variable in self.statistics]
        try:
            for chosen in self.batches:
                self.forward(keras.ops.convert_to_tensor(self.images[chosen], "float32"))
                for total, variable in zip(sums, self.statistics):
                    total += variable.numpy()
        finally:
            for (layer, attribute), value in zip(switched, saved):
                setattr(layer, attribute, value)
        for total, variable in zip(sums, self.statistics):
            variable.assign((total / len(self.batches)).astype(np.float32))
        return len(self.layers)

    @contextmanager
    def applied(self):
        """Recalibrated statistics inside the block; after it, the moving statistics and the seed
        generators' states (a random layer other than Dropout draws in training mode) as they were,
        bit for bit."""
        generators = [generator for layer in self.model._flatten_layers(include_self=True)
                      for generator in getattr(layer, "_seed_generators", [])]
        variables = self.statistics + [generator.state for generator in generators]
        saved = [variable.numpy() for variable in variables]
        try:
            self()
            yield
        finally:
            for variable, value in zip(variables, saved):
                variable.assign(value)


def recalibrate_batchnorm(model, images, batch_size: int, seed: int, eager: bool = False) -> int:
    """``Recalibration`` on at most ``CALIBRATION_IMAGES`` of ``images``, once; the number of layers recalibrated."""
    return Recalibration(model, images, batch_size, seed, eager, limit=CALIBRATION_IMAGES)()
