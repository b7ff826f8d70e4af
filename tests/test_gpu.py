"""The GPU path: device placement, mixed precision and XLA. Runs where a GPU is present; skipped
with the reason where none is (CI has none)."""

import numpy as np
import pytest


def _gpus():
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


@pytest.fixture(scope="module")
def gpu_runtime():
    if not _gpus():
        pytest.skip("no GPU visible to TensorFlow on this machine")
    from imgclf import runtime

    section = {"mixed_precision": True, "xla": True, "cpu_isa": "native", "op_determinism": False}
    yield runtime.configure_runtime(4, section, 0)
    import keras

    keras.mixed_precision.set_global_policy("float32")


def test_gpu_training_uses_the_device_mixed_precision_and_xla(gpu_runtime):
    import keras

    from imgclf import data, models, train

    assert {key: gpu_runtime[key] for key in ("device", "gpus", "mixed_precision", "xla", "threads")} == {
        "device": "GPU", "gpus": len(_gpus()), "mixed_precision": True, "xla": True, "threads": 4}
    assert keras.mixed_precision.global_policy().name == "mixed_float16"
    model = models.build("seed_cnn", (32, 32, 3), 200)
    assert model.get_layer("conv1").compute_dtype == "float16"
    assert model.output.dtype == "float32"  # the softmax head stays float32
    section = {"optimizer": "adam", "weight_decay": 0.0, "lr_schedule": "constant"}
    train.compile_model(model, section, gpu_runtime, 1e-3, 10)
    x = np.random.default_rng(0).integers(0, 256, (256, 32, 32, 3)).astype(np.uint8)
    y = np.arange(256) % 200
    history = model.fit(data.dataset(x, y, 64, (0, 0)), epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert "GPU" in model.trainable_weights[0].value.device
    assert model.jit_compile is True


def test_cpu_runtime_ignores_gpu_switches_without_a_gpu():
    if _gpus():
        pytest.skip("a GPU is present: the CPU fallback is what CI checks")
    from imgclf.runtime import configure_runtime

    runtime = configure_runtime(2, {"mixed_precision": True, "xla": True, "cpu_isa": "native",
                                          "op_determinism": False}, 0)
    assert runtime["device"] == "CPU" and not runtime["mixed_precision"] and not runtime["xla"]
