"""The fused optimizers update like Keras' own (same formulas, one kernel per variable), and
really run the fused kernels in a traced training step."""

import numpy as np
import pytest

from imgclf import optimizers


def _steps(optimizer, steps: int = 4):
    """Variables after ``steps`` traced updates from fixed values and gradients, and the op types
    of the traced update."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.normal(size=shape).astype(np.float32)) for shape in ((3, 3, 4, 8), (8,), (5,))]
    grads = [[rng.normal(size=v.shape).astype(np.float32) for v in variables] for _ in range(steps)]
    optimizer.build(variables)
    apply = tf.function(lambda g: optimizer.apply(g, variables))
    for step in grads:
        apply([tf.constant(g) for g in step])
    ops = {op.type for op in apply.get_concrete_function([tf.constant(g) for g in grads[0]]).graph.get_operations()}
    return [v.numpy() for v in variables], ops


@pytest.mark.parametrize("fused, stock, kernel", [
    (lambda k: optimizers.FusedAdam(0.01), lambda k: k.optimizers.Adam(0.01), "ResourceApplyAdam"),
    (lambda k: optimizers.FusedAdamW(0.01, weight_decay=0.05), lambda k: k.optimizers.AdamW(0.01, weight_decay=0.05),
     "ResourceApplyAdam"),
    (lambda k: optimizers.FusedAdam(k.optimizers.schedules.CosineDecay(0.02, 3)),
     lambda k: k.optimizers.Adam(k.optimizers.schedules.CosineDecay(0.02, 3)), "ResourceApplyAdam"),
    (lambda k: optimizers.FusedSGD(0.05, momentum=0.9, nesterov=True),
     lambda k: k.optimizers.SGD(0.05, momentum=0.9, nesterov=True), "ResourceApplyKerasMomentum"),
    (lambda k: optimizers.FusedSGD(0.05, momentum=0.9), lambda k: k.optimizers.SGD(0.05, momentum=0.9),
     "ResourceApplyKerasMomentum"),
], ids=["adam", "adamw", "adam-cosine", "sgd-nesterov", "sgd-momentum"])
def test_a_fused_update_equals_keras_own(fused, stock, kernel):
    import keras

    ours, ops = _steps(fused(keras))
    theirs, stock_ops = _steps(stock(keras))
    assert kernel in ops and kernel not in stock_ops
    start = [np.random.default_rng(0).normal(size=shape).astype(np.float32) for shape in ((3, 3, 4, 8), (8,), (5,))]
    moved = max(float(np.abs(a - b).max()) for a, b in zip(theirs, start))
    assert moved > 1e-2  # the steps did move the variables
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_amsgrad_falls_back_to_the_keras_update():
    import keras

    ours, ops = _steps(optimizers.FusedAdam(0.01, amsgrad=True))
    theirs, _ = _steps(keras.optimizers.Adam(0.01, amsgrad=True))
    assert "ResourceApplyAdam" not in ops
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_the_pipeline_compiles_with_a_built_fused_optimizer():
    import keras

    from imgclf import experiments, train

    section = {key: param.default for key, param in experiments.COMMON.items()}
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    train.compile_model(model, section, {"xla": False}, 0.01, 10)
    assert isinstance(model.optimizer, optimizers.FusedAdam)
    assert model.optimizer.built  # slots made eagerly, not inside the first traced step
