import numpy as np
import pytest

from imgclf import experiments, models

# parameter counts at 32x32x3 input, 200 classes, of the models the project ships: a change to
# any of these architectures must show here (a model added later gets the forward-pass test alone)
EXPECTED_PARAMS = {
    "seed_cnn": 795_000,
    "seed_cnn_hwc": 3_732_520,
    "alexnet32": 832_024,
    "cifar_cnn": 330_664,
    "densenet121": 7_242_504,
    "densenet169": 12_975_880,
    "densenet201": 18_706_184,
    "densenet161": 27_133_736,
}


def test_every_shipped_model_is_registered():
    assert set(EXPECTED_PARAMS) <= set(models.names())


@pytest.mark.parametrize("name", models.names())
def test_model_forward_pass(name):
    model = models.build(name, (32, 32, 3), 200)
    assert model.count_params() == EXPECTED_PARAMS.get(name, model.count_params())
    batch = np.random.default_rng(0).integers(0, 256, size=(2, 32, 32, 3)).astype(np.float32)
    output = np.asarray(model(batch, training=False))
    assert output.shape == (2, 200)
    assert np.all(np.isfinite(output))
    np.testing.assert_allclose(output.sum(axis=1), 1.0, rtol=1e-4)


def test_seed_cnn_layer_shapes_match_the_paper_summary():
    model = models.build("seed_cnn", (32, 32, 3), 200)
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert shapes["conv1"] == (3, 32, 16)
    assert shapes["pool"] == (1, 10, 64)
    assert shapes["flatten"] == (640,)
    assert model.get_layer("conv1").count_params() == 12_816


@pytest.mark.parametrize("depth", [121, 169, 201])
def test_own_densenet_builder_matches_keras_applications(depth):
    """With keras.applications' weights loaded into ours (same order, same shapes), both networks
    compute the same features on the same images: same layers, wiring, padding and BatchNorm
    epsilon, not just the same weight shapes."""
    import keras

    from imgclf.models import densenet

    ours = densenet._densenet((32, 32, 3), *densenet.CONFIGS[depth], "imagenet", f"densenet{depth}")
    theirs = getattr(keras.applications, f"DenseNet{depth}")(include_top=False, weights=None, input_shape=(32, 32, 3),
                                                             pooling="avg")
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    rng = np.random.default_rng(depth)
    values = [rng.normal(0.0, 0.05, tuple(w.shape)).astype(np.float32) for w in theirs.weights]
    for w, value in zip(theirs.weights, values):
        if "moving_variance" in w.path or w.path.endswith("gamma"):
            value[...] = rng.uniform(0.5, 1.5, value.shape)  # positive variances, unit-ish scales
    theirs.set_weights(values)
    ours.set_weights(values)
    images = rng.uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    images = keras.applications.densenet.preprocess_input(images)
    for training in (False, True):  # moving statistics, then the batch's own (the training branch)
        expected = np.asarray(theirs(images, training=training))
        got = np.asarray(ours(images, training=training))
        assert expected.shape == got.shape == (4, theirs.output.shape[-1])
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # ours normalise the last axis: Keras' TensorFlow backend reshapes every BatchNorm's four
    # vectors for any other axis (a larger graph to trace; bench/bench_train.py)
    norms = [layer for layer in ours.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(layer.axis == -1 for layer in norms)


def test_small_stem_keeps_spatial_resolution():
    from imgclf.models import densenet

    small = densenet.backbone(121, (32, 32, 3), stem="small")
    imagenet = densenet.backbone(121, (32, 32, 3), stem="imagenet")
    assert small.get_layer("conv2_block1_concat").output.shape[1] == 32
    assert imagenet.get_layer("conv2_block1_concat").output.shape[1] == 8


def test_unfreeze_keeps_batchnorm_frozen():
    import keras

    from imgclf.models import transfer

    model = transfer.transfer_model((32, 32, 3), 10, weights=_local_weights())
    base = model.get_layer("densenet201")
    assert transfer.trainable_count(model) == 1920 * 10 + 10
    transfer.unfreeze(base, "conv5_block1_")
    opened = [layer for layer in base.layers if layer.trainable]
    assert opened and all(not isinstance(layer, keras.layers.BatchNormalization) for layer in opened)
    assert not base.get_layer("conv4_block1_1_conv").trainable and base.get_layer("conv5_block1_1_conv").trainable


def _local_weights(cache={}):
    """A DenseNet-201 no-top weights file made here (the ImageNet file cannot be downloaded offline)."""
    if "path" not in cache:
        import tempfile

        from imgclf.models import densenet

        path = tempfile.mkdtemp() + "/densenet201_notop.weights.h5"
        densenet.backbone(201, (32, 32, 3)).save_weights(path)
        cache["path"] = path
    return cache["path"]


def test_registry_errors_name_the_known_entries():
    from imgclf.errors import PipelineError

    with pytest.raises(PipelineError, match="unknown model 'resnet'; known: alexnet32"):
        models.build("resnet", (32, 32, 3), 10)
    with pytest.raises(PipelineError, match="unknown experiment 'x'; known: seed_cnn"):
        experiments.get("x")


def test_every_experiment_uses_a_registered_model():
    for experiment in experiments.EXPERIMENTS.values():
        assert experiment.kind == "autokeras" or experiment.model in models.names()


def test_imagenet_normalize_is_densenets_preprocess_input():
    """The DenseNets' in-model preprocessing is keras.applications.densenet.preprocess_input
    ('torch' mode: scale to [0, 1], subtract ImageNet's mean, divide by its std) on raw pixels."""
    import keras
    import numpy as np

    from imgclf.models.layers import imagenet_normalize

    images = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 3)).astype("float32")
    inputs = keras.Input((8, 8, 3))
    normalized = keras.Model(inputs, imagenet_normalize(inputs)).predict(images, verbose=0)
    expected = keras.applications.densenet.preprocess_input(images.copy())
    np.testing.assert_allclose(normalized, expected, rtol=1e-5, atol=1e-4)
